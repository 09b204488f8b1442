"""The sharded sweep on a cluster: two worker daemons on PostgreSQL and Redis, one day swept twice.

The expected ledger comes from the same demo dealership (same seed) in a second database,
swept once in this process. The workers run with MILEPOST_SWEEP_LEDGER_ONLY so nothing is
delivered: what is compared is what the sweeps wrote, not how far delivery got by the time the
queues drained.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import REDIS_URL, emptied_redis, pg_database
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from processes import MILEPOST, ROOT, Daemon, milepost_env
from sqlalchemy import Engine, func, select

from crm.db import get_engine
from crm.demo import generate
from crm.migrate import upgrade
from crm.models import Delivery, SweepRange, SweepRun, table
from worker import sweep_runs
from worker.daemons import worker_command
from worker.enqueue import enqueue_all
from worker.runtime import Runtime
from worker.settings import Settings
from worker.sweep import LEDGER_ONLY, evaluate_range, plan_run

D, R, RR = table(Delivery), table(SweepRun), table(SweepRange)
CAMPAIGNS = ROOT / "campaigns"
DAY = date(2026, 11, 23)
AS_OF = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # DAY at the sweep time
CUSTOMERS, SEED = 300, 11
BATCH = 20  # vehicles per range: a couple of dozen ranges a sweep, shared by both workers
# A Redis database of this file's own: workers of other tests (DB 15) must not take its messages.
CLUSTER_REDIS_URL = os.environ.get(
    "MILEPOST_TEST_CLUSTER_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/11"
)
WAIT_S = 60
KEY = ("campaign", "step", "subject_id", "occurrence")
# Every ledger column but the id and the wall-clock stamps: a row's whole content.
CONTENT = [c for c in D.c if c.name not in ("id", "created_at", "updated_at")]

Ledger = dict[tuple[Any, ...], tuple[Any, ...]]


@pytest.fixture
def cluster_redis() -> Iterator[str]:
    """The Redis database of the cluster's broker, emptied before and after."""
    with emptied_redis(CLUSTER_REDIS_URL) as url:
        yield url


@pytest.fixture
def dealers() -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases holding the same demo dealership: (swept, reference)."""
    with pg_database("milepost_cluster") as swept, pg_database("milepost_alone") as alone:
        for url in (swept, alone):
            upgrade(url)
            generate(url, customers=CUSTOMERS, seed=SEED, today=DAY)
        yield swept, alone


def cluster_env(database_url: str, broker_url: str) -> dict[str, str]:
    settings = milepost_env(
        database_url=database_url,
        broker_url=broker_url,
        campaigns=str(CAMPAIGNS),
        metrics_port=0,
        sweep_batch=BATCH,
        quiet_hours="00:00-00:00",  # open all day: the wall clock must not matter
    )
    return settings | {LEDGER_ONLY: "1"}


@pytest.fixture
def workers(dealers: tuple[str, str], cluster_redis: str, tmp_path: Path) -> Iterator[list[Daemon]]:
    """Two `dramatiq worker.actors` commands (as on two machines) on the swept database."""
    # Two messages per queue at a time per worker (one per thread): neither hoards the ranges.
    settings = Settings(metrics_port=0, worker_prefetch=2)
    argv, extra = worker_command(settings, processes=1, threads=2)
    # Idle workers poll every 50 ms, not every second: the sweeps here take a fraction of one,
    # and a worker still backing off would leave them all to the other.
    env = cluster_env(dealers[0], cluster_redis) | extra | {"dramatiq_worker_timeout": "50"}
    daemons: list[Daemon] = []
    try:
        for name in ("one", "two"):
            # --verbose: each message a worker takes is logged, so the test sees who did what.
            daemons.append(Daemon([*argv, "--verbose"], env, tmp_path / name))
        for daemon in daemons:
            daemon.wait_for(partial(daemon.says, "ready for action"), 60, "the worker ready")
        yield daemons
    finally:
        for daemon in daemons:  # SIGTERM to all first, so they shut down side by side
            daemon.terminate()
        for daemon in daemons:
            with suppress(subprocess.TimeoutExpired):
                daemon.exited(timeout=15)
            daemon.cleanup()  # SIGKILL whatever is left of its process group


@pytest.fixture
def producer(cluster_redis: str) -> Iterator[RedisBroker]:
    """A broker client of this process's own, to queue work and wait for the queues."""
    broker = RedisBroker(url=cluster_redis, middleware=[])
    yield broker
    broker.close()


def ledger(engine: Engine) -> Ledger:
    """Each ledger row's content by its key; fails if a key is there twice."""
    with engine.connect() as conn:
        rows = conn.execute(select(*CONTENT)).all()
    content = {tuple(getattr(r, k) for k in KEY): tuple(r) for r in rows}
    assert len(content) == len(rows), "a ledger key is there twice"
    return content


def runs(engine: Engine) -> list[tuple[Any, ...]]:
    """(id, ranges, done, finished?, range markers) of every sweep run, by id."""
    markers = select(func.count()).where(RR.c.run_id == R.c.id).scalar_subquery()
    query = select(R.c.id, R.c.ranges, R.c.done, R.c.finished_at.is_not(None), markers)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query.order_by(R.c.id))]


def runtime(url: str) -> Runtime:
    """A runtime of this test's own (not the process-wide one) on ``url``."""
    return Runtime(Settings(database_url=url, campaigns=CAMPAIGNS, sweep_batch=BATCH))


def sweep_once_here(url: str) -> Ledger:
    """The reference: one sweep of the database, range after range in this process."""
    rt = runtime(url)
    run = sweep_runs.create(rt.engine, AS_OF)
    for lo, hi in plan_run(rt, run):
        evaluate_range(rt, lo, hi, AS_OF.isoformat(), run_id=run)
    return ledger(rt.engine)


def message(actor: str, *args: Any, run_id: int) -> Message[Any]:
    return Message(
        queue_name=actor, actor_name=actor, args=args, kwargs={"run_id": run_id}, options={}
    )


def taken(daemon: Daemon, actor: str) -> int:
    """How many ``actor`` messages the worker took (from its --verbose log)."""
    return len(re.findall(rf"Received message {actor}\(", daemon.output()))


def drain(broker: RedisBroker, daemons: list[Daemon]) -> None:
    """Wait until every `sweep` and the `evaluate`s it queued are acknowledged; none failed."""
    deadline = time.monotonic() + WAIT_S
    for queue in ("sweep", "evaluate"):  # a sweep queues its evaluates before its ack
        while broker.do_qsize(queue):  # queued, being processed, or waiting for a retry
            # A failed message waits for its retry (seconds): stop at the first failure.
            failed = next((d for d in daemons if d.says("Failed to process message")), None)
            assert failed is None, failed.output()  # e.g. a deadlock or a key violation
            assert time.monotonic() < deadline, f"{queue} not drained in {WAIT_S} s"
            time.sleep(0.05)
    dead = {q: broker.client.zcard(f"{broker.namespace}:{q}.XQ") for q in ("sweep", "evaluate")}
    assert dead == {"sweep": 0, "evaluate": 0}
    assert broker.do_qsize("deliver") == 0  # ledger only: nothing was queued to send


def sweep_command(env: dict[str, str]) -> str:
    """`milepost sweep --date DAY`, as an operator types it; what it printed."""
    done = subprocess.run(
        [MILEPOST, "sweep", "--date", DAY.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def assert_finished(recorded: list[tuple[Any, ...]], ids: list[int], ranges: int) -> None:
    assert recorded == [(run, ranges, ranges, True, ranges) for run in ids]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(120)
def test_two_workers_sweeping_the_same_day_twice_at_once_write_one_sweeps_ledger(
    dealers: tuple[str, str],
    workers: list[Daemon],
    producer: RedisBroker,
    cluster_redis: str,
    record_property: Callable[[str, object], None],
) -> None:
    swept, alone = dealers
    expected = sweep_once_here(alone)
    engine = get_engine(swept)
    # The day's sweep twice, as from a double scheduler tick: two runs, queued in one go.
    twins = [sweep_runs.create(engine, AS_OF) for _ in range(2)]
    enqueue_all(producer, [message("sweep", AS_OF.isoformat(), run_id=run) for run in twins])

    drain(producer, workers)

    assert len(expected) > 100
    assert ledger(engine) == expected  # the same keys, each row as one sweep writes it
    ranges = runs(engine)[0][1]
    assert ranges is not None and ranges > 10  # enough for both workers to share them
    assert_finished(runs(engine), twins, ranges)
    shares = [taken(w, "evaluate") for w in workers]
    record_property("evaluate_messages_per_worker", shares)
    # Each taken once (nothing retried or redelivered), and both workers took part.
    assert sum(shares) == 2 * ranges and all(shares), shares

    # A third sweep afterwards, queued by the command an operator types, adds nothing.
    assert "Sweep 3 queued" in sweep_command(cluster_env(swept, cluster_redis))
    drain(producer, workers)

    assert ledger(engine) == expected
    assert_finished(runs(engine)[2:], [3], ranges)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(120)
def test_two_sweeps_racing_range_by_range_in_two_workers_write_one_sweeps_ledger(
    dealers: tuple[str, str],
    workers: list[Daemon],
    producer: RedisBroker,
    record_property: Callable[[str, object], None],
) -> None:
    swept, alone = dealers
    expected = sweep_once_here(alone)
    rt = runtime(swept)
    # Queued sweeps run one after the other (their evaluates queue in order); here each range
    # of one run sits next to its twin of the other, so the two are evaluated side by side.
    first, second = (sweep_runs.create(rt.engine, AS_OF) for _ in range(2))
    ranges = plan_run(rt, first)
    assert plan_run(rt, second) == ranges and len(ranges) > 10
    as_of = AS_OF.isoformat()
    enqueue_all(
        producer,
        [
            message("evaluate", lo, hi, as_of, run_id=run)
            for lo, hi in ranges
            for run in (first, second)
        ],
    )

    drain(producer, workers)

    assert len(expected) > 100
    assert ledger(rt.engine) == expected
    assert_finished(runs(rt.engine), [first, second], len(ranges))
    shares = [taken(w, "evaluate") for w in workers]
    record_property("evaluate_messages_per_worker", shares)
    assert sum(shares) == 2 * len(ranges) and all(shares), shares
