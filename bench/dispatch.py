"""Dispatch benchmark: due SMS deliveries through Redis and a Dramatiq worker to a fake Twilio.

    .venv/bin/python bench/dispatch.py            # 20,000 deliveries, 2 processes x 8 threads

Two phases, the same worker command each time, in this run: the ceiling (a bare actor that
sleeps as long as the fake Twilio takes to answer) and the real `deliver` actor (claim,
policies, render, the Twilio SDK, record), with as many rows per message as production queues
(worker.actors.DELIVER_BATCH). Both rates are deliveries (rows, or naps) per second. Each
phase's messages are queued before its worker starts, and its rate runs from the first message
done to the last, so neither queueing nor start-up counts. Everything stays on 127.0.0.1;
every wait has a deadline.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAP_QUEUE = "bench-nap"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--prefetch", type=int, default=0, help="0: Dramatiq's (2 x threads)")
    parser.add_argument(
        "--db", default="sqlite", help="sqlite, postgresql (the local server) or an admin URL"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="emptied first")
    parser.add_argument("--timeout", type=float, default=600, help="give up after (seconds)")
    return parser


ARGS = _parser().parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # worker.actors builds its broker on import, from the environment: this run's Redis.
    os.environ["MILEPOST_BROKER_URL"] = ARGS.redis

import dramatiq  # noqa: E402
from dispatch_phases import Bench  # noqa: E402

from worker import actors  # noqa: E402 — the broker the `nap` actor is declared on


@dramatiq.actor(queue_name=NAP_QUEUE, max_retries=0)
def nap(seconds: float) -> None:
    """The ceiling: a job that only waits, as long as the provider takes to answer."""
    time.sleep(seconds)


def _zone_in_window() -> str:
    # A zone where it is mid-afternoon now, so quiet hours (checked for real) let every SMS go.
    hour = datetime.now(UTC).hour
    offset = (14 - hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "UTC"


def build(url: str, count: int) -> None:
    """A fresh ledger of ``count`` due marketing SMS, one per customer."""
    from sqlalchemy import insert

    from crm.db import get_engine
    from crm.migrate import upgrade
    from crm.models import Customer, Delivery, table
    from worker import ledger_stats

    upgrade(url)
    now = datetime.now(UTC) - timedelta(minutes=1)
    zone = _zone_in_window()
    customers = [
        {"id": i, "code": f"B{i}", "name": f"客户{i}", "phone": f"+86139{i:08d}", "timezone": zone}
        for i in range(1, count + 1)
    ]
    facts = {"customer": {"title": "王先生", "language": "zh"}, "vehicle": {"model": "Model Y"}}
    rows = [
        {
            **{"campaign": "first-service", "step": 0, "subject_id": i, "occurrence": "once"},
            **{"customer_id": i, "vehicle_id": i, "channel": "sms", "priority": 70},
            **{"template": "first-service/sms", "status": "pending", "attempts": 0},
            **{"due_at": now, "facts": facts, "created_at": now, "updated_at": now},
        }
        for i in range(1, count + 1)
    ]
    with get_engine(url).begin() as conn:
        conn.execute(insert(table(Customer)), customers)
        conn.execute(insert(table(Delivery)), rows)
    # What the sweep does after filling the ledger (see worker.ledger_stats).
    ledger_stats.refresh(get_engine(url))


def database(name: str, out: Path) -> str:
    """A fresh, empty database for the run: a SQLite file, or one on the local PostgreSQL."""
    if name == "sqlite":
        for stale in out.glob("dispatch.db*"):
            stale.unlink()
        return f"sqlite:///{out / 'dispatch.db'}"
    import psycopg

    admin = "postgresql://postgres@127.0.0.1:5432/test" if name == "postgresql" else name
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute("DROP DATABASE IF EXISTS milepost_bench_dispatch WITH (FORCE)")
        conn.execute("CREATE DATABASE milepost_bench_dispatch")
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/milepost_bench_dispatch"


def main(args: argparse.Namespace) -> None:
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / "dispatch.lock", "w")  # noqa: SIM115 — held until the process ends
    try:  # two runs at once would flush each other's queues and files
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit("another bench/dispatch.py is running; wait for it") from None
    url = database(args.db, out)
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    t = time.perf_counter()
    build(url, args.deliveries)
    kind = url.split(":")[0]
    print(f"ledger: {args.deliveries:,} due SMS on {kind} in {time.perf_counter() - t:.1f} s")

    bench = Bench(args, url, actors.broker)
    try:
        bench.start_fake()
        nap_s = args.latency_ms / 1000
        naps = [nap.message(nap_s) for _ in range(args.deliveries)]
        ceiling = bench.phase("ceiling (bare 5 ms actor)", NAP_QUEUE, naps)
        jobs = actors.deliver_jobs(range(1, args.deliveries + 1))
        rate = bench.phase("deliver", "deliver", jobs, per_message=actors.DELIVER_BATCH)
        stats = bench.fake_stats()
    finally:
        bench.close()
    from sqlalchemy import func, select

    from crm.db import get_engine
    from crm.models import Delivery, table

    D = table(Delivery)
    with get_engine(url).connect() as conn:
        statuses: dict[str, int] = dict(
            conn.execute(select(D.c.status, func.count()).group_by(D.c.status)).all()
        )
    print(f"ledger after: {statuses}; fake Twilio: {stats}")
    print(f"deliver / ceiling: {rate / ceiling:.2f} (target 0.6)")
    left = args.deliveries - statuses.get("sent", 0)
    figures = {
        "deliveries": int(statuses.get("sent", 0)),
        "deliveries_per_s": round(rate),
        "ceiling_per_s": round(ceiling),
        "duplicates": int(stats["duplicates"]),
    }
    print(json.dumps(figures))
    if left:  # messages vanished from Redis (flushed by someone?) or rows failed: say so
        sys.exit(1)


if __name__ == "__main__":
    assert ARGS is not None
    main(ARGS)
