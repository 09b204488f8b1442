"""Sweep benchmark: demo dealership of N vehicles, all default campaigns, figures and one JSON line.

    .venv/bin/python bench/sweep.py --vehicles 100000
    .venv/bin/python bench/sweep.py --vehicles 1000000 --db postgresql --broker redis

Phases, all in this run so the figures compare: reading the rows alone; facts -> matches through
the Evaluator (Python pre-filter + durable_rules deciding); facts -> plain Python predicates (the
baseline); then the real sweep, from its start to the last ledger row; then the next day's
sweep (every vehicle again, only what became due since written). In process (the default)
that is the in-process broker with one worker thread: one core. With ``--broker redis`` it is
the `sweep` message on the real Redis broker and ``--workers`` `dramatiq` processes sharing the
`evaluate` messages (bench/sweep_cluster.py), with their peak RSS and where the machine's CPU
went meanwhile (workers, PostgreSQL, Redis, anything else, idle). ``--db postgresql``
generates into a new PostgreSQL database, dropped at the end. Either way the sweep stops at
the ledger (MILEPOST_SWEEP_LEDGER_ONLY): delivering is bench/dispatch.py's to measure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import sweep_cluster as cluster  # noqa: E402


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


def sqlite_url(vehicles: int) -> str:
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"sweep-{vehicles}.db*"):
        stale.unlink()
    return f"sqlite:///{out / f'sweep-{vehicles}.db'}"


def phases(as_of: datetime, batch: int) -> dict[str, Any]:
    """Seconds spent reading, deriving, matching and in the baseline predicate, this process."""
    from crm.records import id_ranges, load_records
    from rules.facts import derive
    from worker.runtime import get_runtime

    rt = get_runtime()
    tz, holidays, rates = rt.settings.tz, rt.holidays, rt.settings.km_per_day
    with rt.engine.connect() as conn:
        ranges = id_ranges(conn, batch)
    took = dict.fromkeys(("read", "facts", "rules", "baseline"), 0.0)
    counts = dict.fromkeys(("vehicles", "matches", "baseline_matches"), 0)
    for lo, hi in ranges:
        t = time.perf_counter()
        with rt.engine.connect() as conn:
            records = load_records(conn, lo, hi)
        took["read"] += time.perf_counter() - t
        t = time.perf_counter()
        facts = [derive(r, as_of, tz=tz, holidays=holidays, km_per_day=rates) for r in records]
        took["facts"] += time.perf_counter() - t
        t = time.perf_counter()
        for record, one in zip(records, facts, strict=True):
            matched = rt.evaluator.matches(one, customer_campaigns=record["is_primary"])
            counts["matches"] += len(matched)
        took["rules"] += time.perf_counter() - t
        t = time.perf_counter()
        for record, one in zip(records, facts, strict=True):
            primary = record["is_primary"]
            counts["baseline_matches"] += len(
                rt.evaluator.predicate_only(one, customer_campaigns=primary)
            )
        took["baseline"] += time.perf_counter() - t
        counts["vehicles"] += len(records)
    return {**took, **counts}


def ledger_rows() -> int:
    from sqlalchemy import func, select

    from crm.models import Delivery
    from worker.runtime import get_runtime

    with get_runtime().engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Delivery)).scalar_one())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", default="sqlite", help="sqlite, postgresql, or a SQLAlchemy URL")
    parser.add_argument("--broker", default="inprocess", choices=("inprocess", "redis"))
    parser.add_argument("--workers", type=int, default=2, help="worker processes (redis)")
    parser.add_argument("--batch", type=int, default=2000, help="vehicles per evaluate message")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    args = parser.parse_args()

    redis = args.broker == "redis"
    os.environ.pop("MILEPOST_BROKER_URL", None)
    if redis:  # before anything reads the settings: this process sends the sweep message
        os.environ["MILEPOST_BROKER_URL"] = cluster.REDIS_URL
        os.environ["MILEPOST_METRICS_PORT"] = "0"
    os.environ["MILEPOST_WORKER_THREADS"] = "1"
    os.environ["MILEPOST_SWEEP_BATCH"] = str(args.batch)
    os.environ["MILEPOST_SWEEP_LEDGER_ONLY"] = "1"  # time the sweep, not queuing deliveries
    today = datetime.now(UTC).date()

    with ExitStack() as stack:
        url = args.db
        if url == "sqlite":
            url = sqlite_url(args.vehicles)
        elif url == "postgresql":
            url = stack.enter_context(cluster.postgres_database(keep=args.keep))
        os.environ["MILEPOST_DATABASE_URL"] = url
        t0 = time.perf_counter()
        build(url, args.vehicles, args.seed, today)
        if url.startswith("postgresql"):
            cluster.analyze(url)
        print(f"generated {args.vehicles:,} vehicles in {time.perf_counter() - t0:.1f} s")

        as_of = datetime.now(UTC)
        took = phases(as_of, args.batch)
        worker_rss: list[float] = []
        cpu: dict[str, float] = {}
        if redis:
            group = stack.enter_context(cluster.workers(args.workers, url))
            use = cluster.CpuUse(group)
            wall_s = cluster.sweep(as_of.isoformat(), args.batch)
            cpu, worker_rss = use.since(), group.peak_rss_mb()
        else:
            from worker import actors, run  # noqa: F401 — imported before the clock starts

            t, cpu_t = time.perf_counter(), time.process_time()
            run.sweep_inprocess(as_of, deliver=False)
            wall_s = time.perf_counter() - t
            # This process's CPU time, all threads: what the sweep cost, whatever else the
            # machine was running meanwhile (wall time on a shared machine is not).
            cpu["sweep"] = time.process_time() - cpu_t
        rows = ledger_rows()
        # The next morning's sweep: every vehicle read and matched again, but only what became
        # due since goes into the ledger. This is the sweep a dealer runs every day.
        next_day = as_of + timedelta(days=1)
        if redis:
            next_s = cluster.sweep(next_day.isoformat(), args.batch)
        else:
            from worker import run

            t = time.perf_counter()
            run.sweep_inprocess(next_day, deliver=False)
            next_s = time.perf_counter() - t
        took |= {"next_day_s": next_s, "next_day_rows": ledger_rows() - rows}
        report(args, took, wall_s, rows, worker_rss, cpu)


def report(
    args: argparse.Namespace,
    took: dict[str, Any],
    wall_s: float,
    rows: int,
    worker_rss: list[float],
    cpu: dict[str, float],
) -> None:
    vehicles = took["vehicles"]
    figures: dict[str, Any] = {
        "vehicles": vehicles,
        "vehicles_per_s": round(vehicles / wall_s),
        "rules_per_s": round(vehicles / (took["facts"] + took["rules"])),
        "baseline_per_s": round(vehicles / (took["facts"] + took["baseline"])),
        "read_per_s": round(vehicles / took["read"]),
        "peak_rss_mb": max(worker_rss) if worker_rss else round(rss_mb(), 1),
    }
    where = f"{args.workers} worker processes" if worker_rss else "1 thread"
    print(f"read rows alone          {figures['read_per_s']:>10,} vehicles/s")
    print(f"facts alone              {vehicles / took['facts']:>10,.0f} vehicles/s")
    print(
        f"facts -> matches         {figures['rules_per_s']:>10,} vehicles/s "
        f"({took['matches']:,} matches)"
    )
    print(
        f"facts -> Python baseline {figures['baseline_per_s']:>10,} vehicles/s "
        f"({took['baseline_matches']:,} matches)"
    )
    print(
        f"end to end ({where}) {figures['vehicles_per_s']:>10,} vehicles/s "
        f"({wall_s:.1f} s to the last of {rows:,} ledger rows)"
    )
    print(
        f"next day's sweep        {vehicles / took['next_day_s']:>10,.0f} vehicles/s "
        f"({took['next_day_s']:.1f} s, {took['next_day_rows']:,} new ledger rows)"
    )
    figures["next_day_s"] = round(took["next_day_s"], 2)
    if worker_rss:
        print(f"peak RSS per worker      {', '.join(f'{mb} MB' for mb in worker_rss)}")
        cores = os.cpu_count() or 1
        other = cpu["machine"] - cpu["workers"] - cpu["postgresql"] - cpu["redis"]
        print(
            f"CPU during the sweep     workers {cpu['workers']} s,"
            f" PostgreSQL {cpu['postgresql']} s, Redis {cpu['redis']} s, other {other:.1f} s; idle"
            f" {cores * wall_s - cpu['machine']:.1f} s of {cores} x {wall_s:.1f} s"
        )
        figures |= {
            "wall_s": round(wall_s, 2),
            "workers": args.workers,
            "worker_rss_mb": worker_rss,
        }
    else:
        figures["cpu_per_s"] = round(vehicles / cpu["sweep"])
        print(
            f"end to end, CPU time     {figures['cpu_per_s']:>10,} vehicles/s "
            f"({cpu['sweep'] / vehicles * 1e6:.0f} µs a vehicle)"
        )
        print(f"peak RSS                 {figures['peak_rss_mb']:>10} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
