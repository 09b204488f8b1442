"""Sweep benchmark: demo dealership of N vehicles, all default campaigns, figures and one JSON line.

    .venv/bin/python bench/sweep.py --vehicles 100000

Phases, all in this run so the figures compare: reading the rows alone; facts -> matches through
the Evaluator (Python pre-filter + durable_rules deciding); facts -> plain Python predicates (the
baseline); then the real sweep end to end (evaluate jobs on the in-process broker, one worker
thread: one core) from its start to the last ledger row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(url: str, vehicles: int, seed: int, today: date) -> None:
    # A separate process, so generating the data does not count in this process's peak RSS.
    code = (
        "import sys, datetime; from crm.migrate import upgrade; from crm.demo import generate;"
        f"upgrade({url!r}); generate({url!r}, vehicles={vehicles}, seed={seed},"
        f" today=datetime.date.fromisoformat({today.isoformat()!r}))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", default="sqlite", help="sqlite or a SQLAlchemy URL")
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()

    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    url = args.db
    if url == "sqlite":
        path = out / f"sweep-{args.vehicles}.db"
        for stale in out.glob(f"sweep-{args.vehicles}.db*"):
            stale.unlink()
        url = f"sqlite:///{path}"
    os.environ["MILEPOST_DATABASE_URL"] = url
    os.environ.pop("MILEPOST_BROKER_URL", None)
    os.environ["MILEPOST_WORKER_THREADS"] = "1"
    os.environ["MILEPOST_SWEEP_BATCH"] = str(args.batch)
    today = datetime.now(UTC).date()

    t0 = time.perf_counter()
    build(url, args.vehicles, args.seed, today)
    print(f"generated {args.vehicles:,} vehicles in {time.perf_counter() - t0:.1f} s")

    from crm.records import id_ranges, load_records
    from rules.facts import derive
    from worker import actors, run
    from worker.runtime import get_runtime

    rt = get_runtime()
    as_of = datetime.now(UTC)
    with rt.engine.connect() as conn:
        ranges = id_ranges(conn, args.batch)

    read_s = facts_s = rules_s = base_s = 0.0
    vehicles = matches = base_matches = 0
    for lo, hi in ranges:
        t = time.perf_counter()
        with rt.engine.connect() as conn:
            records = load_records(conn, lo, hi)
        read_s += time.perf_counter() - t
        t = time.perf_counter()
        all_facts = [
            derive(
                r, as_of, tz=rt.settings.tz, holidays=rt.holidays, km_per_day=rt.settings.km_per_day
            )
            for r in records
        ]
        facts_s += time.perf_counter() - t
        t = time.perf_counter()
        for record, facts in zip(records, all_facts, strict=True):
            matches += len(rt.evaluator.matches(facts, customer_campaigns=record["is_primary"]))
        rules_s += time.perf_counter() - t
        t = time.perf_counter()
        for record, facts in zip(records, all_facts, strict=True):
            primary = record["is_primary"]
            base_matches += len(rt.evaluator.predicate_only(facts, customer_campaigns=primary))
        base_s += time.perf_counter() - t
        vehicles += len(records)

    # From the sweep's start to its last ledger row; delivering is bench/dispatch.py's to measure.
    t = time.perf_counter()
    run.sweep_inprocess(as_of, deliver=False)
    e2e_s = time.perf_counter() - t
    actors.broker.flush_all()
    with rt.engine.connect() as conn:
        from sqlalchemy import func, select

        from crm.models import Delivery

        rows = conn.execute(select(func.count()).select_from(Delivery)).scalar_one()

    figures = {
        "vehicles": vehicles,
        "vehicles_per_s": round(vehicles / e2e_s),
        "rules_per_s": round(vehicles / (facts_s + rules_s)),
        "baseline_per_s": round(vehicles / (facts_s + base_s)),
        "peak_rss_mb": round(rss_mb(), 1),
    }
    print(f"read rows alone          {vehicles / read_s:>10,.0f} vehicles/s")
    print(f"facts alone              {vehicles / facts_s:>10,.0f} vehicles/s")
    print(
        f"facts -> matches         {figures['rules_per_s']:>10,} vehicles/s ({matches:,} matches)"
    )
    print(
        f"facts -> Python baseline {figures['baseline_per_s']:>10,} vehicles/s "
        f"({base_matches:,} matches)"
    )
    print(
        f"end to end (1 thread)    {figures['vehicles_per_s']:>10,} vehicles/s "
        f"({e2e_s:.1f} s to the last of {rows:,} ledger rows)"
    )
    print(f"peak RSS                 {figures['peak_rss_mb']:>10} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
