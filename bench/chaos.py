"""Chaos benchmark: SMS deliveries while workers are SIGKILLed and Redis and PostgreSQL restart.

    .venv/bin/python bench/chaos.py           # 100,000 deliveries: ~35 min on 2 busy cores
    .venv/bin/python bench/chaos.py --deliveries 3000 --no-restarts      # a look, ~1 minute

What runs, all on 127.0.0.1: a throw-away PostgreSQL database (milepost_bench_chaos, dropped at
the end), Redis database 13 (emptied), the fake Twilio in a process of its own (it counts every
message it creates, so a duplicate cannot hide), the `milepost scheduler` daemon, and two worker
commands (what `milepost worker --processes 1 --threads 8` runs), supervised here as compose's
restart policy would. The ledger is one due marketing SMS per customer, added 500 rows at a time
as the sweep's `evaluate` jobs add them (insert, then queue), while fewer than 1,000 wait.

The chaos: every --kill-every seconds (10) the worker process (the one with the threads) of a
worker that has been consuming at least that long is SIGKILLed; Dramatiq's main process then
exits and is started again. Once 30 % of the rows are done Redis is restarted without saving
(every queued message is lost: only the scheduler's tick brings those rows back), and at 60 %
PostgreSQL is restarted (every open connection is cut). THESE ARE THE SHARED SERVERS, restarted
with `redis-cli shutdown nosave` + `redis-server …` and `pg_ctlcluster … restart`; both are
started again at the end whatever happens; --no-restarts leaves them alone. Kills stop when no
row waits any more; then rows left `sending` by killed workers turn `unknown` (--timeout bounds
the whole run).

The scheduler runs with bench timings, set through its MILEPOST_* settings: tick every 2 s,
requeue a waiting row's job after 120 s, `sending` stale after 30 s (production: 30 s, 5 min,
10 min). How long it takes is mostly worker restarts: a worker process needs ~6 s of CPU to
import and warm up, and the run restarts one every ~10 s.

Faults (--no-faults: none): per 100 customers, one number the fake rejects as invalid (21211)
and one that replied STOP (21610), both `failed`; one rate-limited once (429), retried and then
`sent`; one without a phone, `suppressed`. So expect exactly 2 % failed and 1 % suppressed,
less any failing row a kill left `unknown`; every other row `sent` or `unknown`.

Must hold, or the exit status is 1: no duplicate at the provider, no row lost (every row ends
sent, failed, suppressed or unknown), unknown <= kills x threads (a killed worker leaves at most
one row `sending` per thread; the PostgreSQL restart can add up to one per thread of each
worker, not counted in that bound), and the ledger agrees with the provider (no `sent` row the
provider never created, no message created for a row neither `sent` nor `unknown`).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chaos_ledger import WAITING, Feeder, Ledger, add_customers, plan_faults  # noqa: E402
from chaos_parts import (  # noqa: E402
    MILEPOST,
    Daemon,
    FakeTwilio,
    Fleet,
    ensure_servers,
    restart_postgres,
    restart_redis,
)

DATABASE = "milepost_bench_chaos"
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/13"
# The state machine's final states (worker/deliver.py); `sending` and the WAITING ones are not.
FINAL = ("sent", "delivered", "failed", "suppressed", "cancelled", "unknown")
SENT = ("sent", "delivered")
REDIS_AT, POSTGRES_AT = 0.3, 0.6  # the share of rows done when each server is restarted


@dataclass(frozen=True)
class Options:
    """The knobs of one run; the defaults are the benchmark's."""

    deliveries: int = 100_000
    processes: int = 2  # worker commands, one Dramatiq worker process each
    threads: int = 8
    kill_every_s: float = 10.0  # and only a worker that has been consuming this long
    max_kills: int | None = None  # then no more: the rest of the run recovers
    restarts: bool = True  # Redis, then PostgreSQL, once each
    faults: bool = True
    latency_ms: float = 5.0  # the fake Twilio's answer time
    tick_s: float = 2.0
    requeue_quiet_s: float = 120.0  # well over the time a waiting row waits its turn
    stale_sending_s: float = 30.0
    provider_timeout_s: float = 10.0  # Twilio's and SMTP's; staleness must outlast it
    timeout_s: float = 3600.0
    batch: int = 500  # rows added at once, as one sweep `evaluate` job adds them
    backlog: int = 1000  # more only while fewer wait (see chaos_ledger.Feeder: why)
    seed: int = 4
    report_every_s: float = 10.0
    logs: Path = ROOT / "bench" / "out"


@dataclass
class Result:
    deliveries: int
    threads: int
    statuses: dict[str, int]
    duplicates: int
    kills: int
    sent_unseen: int  # rows `sent` that the provider never created
    unexpected: int  # messages created for rows neither sent nor unknown
    unknown_created: int  # `unknown` rows the provider did create (the others never went)
    restarts: dict[str, float] = field(default_factory=dict)  # server: seconds down
    scheduler_restarts: int = 0  # it exited and was started again: it should not have
    wall_s: float = 0.0

    def count(self, *statuses: str) -> int:
        return sum(self.statuses.get(s, 0) for s in statuses)

    @property
    def lost(self) -> int:
        return self.deliveries - self.count(*FINAL)

    @property
    def unknown_limit(self) -> int:
        return self.kills * self.threads

    def problems(self) -> list[str]:
        checks = [
            (self.duplicates, "messages created twice at the provider"),
            (self.lost, "rows lost: not sent, failed, suppressed nor unknown"),
            (self.sent_unseen, "rows marked sent that the provider never created"),
            (self.unexpected, "messages at the provider for rows neither sent nor unknown"),
        ]
        found = [f"{n:,} {what}" for n, what in checks if n]
        unknown = self.count("unknown")
        if unknown > self.unknown_limit:
            found.append(f"{unknown:,} unknown, more than kills x threads = {self.unknown_limit}")
        return found

    def figures(self) -> dict[str, Any]:
        """The JSON line: the issue's keys first, then this run's details."""
        return {
            "deliveries": self.deliveries,
            "sent": self.count(*SENT),
            "failed": self.count("failed"),
            "suppressed": self.count("suppressed"),
            "unknown": self.count("unknown"),
            "lost": self.lost,
            "duplicates": self.duplicates,
            "kills": self.kills,
            "threads": self.threads,
            "unknown_limit": self.unknown_limit,
            "unknown_created": self.unknown_created,
            "sent_unseen": self.sent_unseen,
            "unexpected": self.unexpected,
            "restarts": list(self.restarts),
            "scheduler_restarts": self.scheduler_restarts,
            "wall_s": round(self.wall_s, 1),
        }


def echo(text: str) -> None:
    print(text, flush=True)  # progress shows at once, also when the output goes to a file


def child_env(opts: Options, database_url: str, redis_url: str, fake: FakeTwilio) -> dict[str, str]:
    """The workers' and the scheduler's environment: this run's servers and timings only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
    timeout = str(opts.provider_timeout_s)
    return (
        env
        | fake.settings()
        | {
            "MILEPOST_DATABASE_URL": database_url,
            "MILEPOST_BROKER_URL": redis_url,
            "MILEPOST_CAMPAIGNS": str(ROOT / "campaigns"),
            "MILEPOST_METRICS_PORT": "0",  # two worker commands: no port to share
            "MILEPOST_SMS_RATE_PER_S": "100000",  # measured here: crashes, not the rate limit
            "MILEPOST_RETRY_BACKOFF_S": "1",  # a 429 comes back within seconds
            "MILEPOST_TWILIO_TIMEOUT_S": timeout,
            "MILEPOST_SMTP_TIMEOUT_S": timeout,
            "MILEPOST_SCHEDULER_TICK_S": str(opts.tick_s),
            "MILEPOST_REQUEUE_QUIET_S": str(opts.requeue_quiet_s),
            "MILEPOST_STALE_SENDING_S": str(opts.stale_sending_s),
        }
    )


def run(
    opts: Options, database_url: str, redis_url: str, say: Callable[[str], None] = echo
) -> Result:
    """One chaos run on a migrated, empty database and a Redis database of its own."""
    import redis

    opts.logs.mkdir(parents=True, exist_ok=True)
    redis.Redis.from_url(redis_url).flushdb()
    add_customers(database_url, opts.deliveries, opts.faults)
    feeder = Feeder(database_url, redis_url, opts.deliveries, opts.batch, opts.backlog)
    fake = FakeTwilio(opts.latency_ms)
    fleet: Fleet | None = None
    scheduler: Daemon | None = None
    try:
        if opts.faults:
            say(plan_faults(fake, opts.deliveries))
        env = child_env(opts, database_url, redis_url, fake)
        fleet = Fleet(opts.processes, opts.threads, env, opts.logs)
        fleet.start()
        _wait(fleet.ready, 120, "the workers to start")
        scheduler = Daemon([MILEPOST, "scheduler"], env, opts.logs / "chaos-scheduler.log")
        started = time.perf_counter()
        restarts = _chaos(opts, fleet, scheduler, feeder, Ledger(database_url), say)
        wall = time.perf_counter() - started
    finally:
        feeder.close()
        if fleet is not None:
            fleet.stop()
        if scheduler is not None:
            scheduler.stop()
        try:
            stats, created = fake.stats(), fake.created()
        finally:
            fake.stop()
    assert fleet is not None and scheduler is not None
    result = _reconcile(opts, Ledger(database_url), fleet.kills, stats, created, restarts, wall)
    result.scheduler_restarts = scheduler.restarts
    return result


def _chaos(
    opts: Options,
    fleet: Fleet,
    scheduler: Daemon,
    feeder: Feeder,
    ledger: Ledger,
    say: Callable[[str], None],
) -> dict[str, float]:
    """Feed, kill and restart until every row is final or the deadline passes.

    Returns the servers restarted, with how long each was down.
    """
    rng = random.Random(opts.seed)
    start = time.monotonic()
    deadline, next_kill, next_report = start + opts.timeout_s, start + opts.kill_every_s, start
    restarts: dict[str, float] = {}
    to_restart = [("Redis", REDIS_AT, restart_redis), ("PostgreSQL", POSTGRES_AT, restart_postgres)]
    to_restart = to_restart if opts.restarts else []
    statuses: dict[str, int] = {}
    while time.monotonic() < deadline:
        fleet.supervise()
        scheduler.keep_running()
        statuses = ledger.statuses() or statuses  # the last known while PostgreSQL restarts
        done = sum(statuses.get(s, 0) for s in FINAL)
        if done >= opts.deliveries:
            return restarts
        waiting = sum(statuses.get(s, 0) for s in WAITING)
        feeder.feed(waiting)
        now = time.monotonic()
        # Kills stop once nothing waits: what is left is rows `sending` turning `unknown`.
        more = opts.max_kills is None or fleet.kills < opts.max_kills
        chaos = more and (waiting or not feeder.done or to_restart)
        if now >= next_kill and chaos and fleet.kill_one(rng, at_work_s=opts.kill_every_s):
            next_kill = now + opts.kill_every_s
        if to_restart and done >= to_restart[0][1] * opts.deliveries:
            name, _, restart = to_restart.pop(0)
            say(f"{now - start:6.0f} s: restarting {name} ({done:,} rows done)")
            restarts[name] = restart()
            say(f"{time.monotonic() - start:6.0f} s: {name} is back, down {restarts[name]:.1f} s")
        if now >= next_report:
            shown = "".join(f", {s} {n:,}" for s, n in sorted(statuses.items()))
            added = feeder.next_id - 1
            say(f"{now - start:6.0f} s: {added:,} rows added{shown}; kills {fleet.kills}")
            next_report = now + opts.report_every_s
        time.sleep(0.5)
    say(f"deadline: not every row was final after {opts.timeout_s:.0f} s")
    return restarts


def _reconcile(
    opts: Options,
    ledger: Ledger,
    kills: int,
    stats: dict[str, Any],
    created: dict[str, int],
    restarts: dict[str, float],
    wall: float,
) -> Result:
    """The ledger against what the fake Twilio created, recipient by recipient."""
    rows = ledger.phones()
    statuses: dict[str, int] = {}
    for _, status in rows:
        statuses[status] = statuses.get(status, 0) + 1
    by_phone = {p: s for p, s in rows if p}
    sent_unseen = sum(1 for p, s in rows if s in SENT and not created.get(p or ""))
    unexpected = sum(n for p, n in created.items() if by_phone.get(p) not in (*SENT, "unknown"))
    unknown_created = sum(1 for p, s in rows if s == "unknown" and created.get(p or ""))
    return Result(
        deliveries=opts.deliveries,
        threads=opts.threads,
        statuses=statuses,
        duplicates=int(stats["duplicates"]),
        kills=kills,
        sent_unseen=sent_unseen,
        unexpected=unexpected,
        unknown_created=unknown_created,
        restarts=restarts,
        wall_s=wall,
    )


def _wait(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what} after {timeout} s; see bench/out")
        time.sleep(0.1)


def fresh_database(admin: str = POSTGRES_ADMIN) -> str:
    """The run's database, empty and migrated (a SQLAlchemy URL)."""
    import psycopg

    from crm.migrate import upgrade

    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{DATABASE}"
    upgrade(url)
    return url


def drop_database(url: str, admin: str = POSTGRES_ADMIN) -> None:
    import psycopg

    from crm.db import get_engine

    get_engine(url).dispose()
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def report(result: Result, say: Callable[[str], None] = echo) -> None:
    say("")
    say(f"{'final status':<14}{'rows':>10}")
    for status, n in sorted(result.statuses.items(), key=lambda item: -item[1]):
        say(f"{status:<14}{n:>10,}")
    unknown = result.count("unknown")
    say(f"{'total':<14}{sum(result.statuses.values()):>10,}")
    say("")
    say(f"duplicates at the provider: {result.duplicates} (must be 0)")
    say(f"lost: {result.lost} (must be 0)")
    say(
        f"unknown: {unknown:,} of at most {result.kills} kills x {result.threads} threads"
        f" = {result.unknown_limit:,}; the provider created {result.unknown_created:,} of them"
    )
    say(
        f"ledger vs provider: {result.sent_unseen} sent rows never created, "
        f"{result.unexpected} messages for rows neither sent nor unknown (both must be 0)"
    )
    down = ", ".join(f"{name} down {s:.1f} s" for name, s in result.restarts.items()) or "none"
    say(f"server restarts: {down}; wall {result.wall_s:.0f} s")
    if result.scheduler_restarts:
        say(f"the scheduler exited and was started again {result.scheduler_restarts} times")
    for problem in result.problems():
        say(f"FAILED: {problem}")


def _parser() -> argparse.ArgumentParser:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=defaults.deliveries)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="per worker")
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every_s, help="seconds")
    parser.add_argument(
        "--no-restarts", action="store_true", help="leave the shared Redis and PostgreSQL alone"
    )
    parser.add_argument("--no-faults", action="store_true", help="the fake Twilio accepts all")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms)
    parser.add_argument("--timeout", type=float, default=defaults.timeout_s, help="seconds")
    parser.add_argument("--redis", default=REDIS_URL, help="a database of its own: emptied")
    parser.add_argument("--keep-db", action="store_true", help=f"keep {DATABASE} afterwards")
    return parser


def main() -> None:
    import psycopg
    import redis

    # `timeout`, `kill`, a CI job's cancel: unwind like Ctrl-C, so every finally below runs
    # (the workers, the scheduler and the fake stop; the servers are started if down).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args = _parser().parse_args()
    opts = Options(
        deliveries=args.deliveries,
        threads=args.threads,
        kill_every_s=args.kill_every,
        restarts=not args.no_restarts,
        faults=not args.no_faults,
        latency_ms=args.latency_ms,
        timeout_s=args.timeout,
    )
    opts.logs.mkdir(parents=True, exist_ok=True)
    lock = open(opts.logs / "chaos.lock", "w")  # noqa: SIM115 — held until the process ends
    try:  # two runs at once would restart servers under each other and share a database
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit("another bench/chaos.py is running; wait for it") from None
    url = fresh_database()
    try:
        result = run(opts, url, args.redis)
    finally:
        started = ensure_servers()  # whatever happened, leave both servers running
        if started:
            print(f"started again: {', '.join(started)}")
        with contextlib.suppress(Exception):  # not to hide the error that got us here
            redis.Redis.from_url(args.redis).flushdb()
        if args.keep_db:
            print(f"kept database {DATABASE}")
        else:
            try:
                drop_database(url)
            except psycopg.Error as exc:  # PostgreSQL not back yet: say so, hide nothing
                print(f"could not drop {DATABASE}: {exc}")
    report(result)
    print(json.dumps(result.figures()))
    if result.problems():
        sys.exit(1)


if __name__ == "__main__":
    main()
