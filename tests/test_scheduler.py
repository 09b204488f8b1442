"""The scheduler: its tick releases what is due exactly once, and the sweep fires at local time."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import dramatiq
import pytest
import time_machine
from conftest import require_service
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import func, insert, select, update
from typer.testing import CliRunner

from crm.demo import generate
from crm.models import CallTask, Delivery, OutboxMessage, table
from worker import actors, scheduler
from worker.broker import make_broker
from worker.cli import app
from worker.daemons import broker_problem
from worker.enqueue import enqueue_all
from worker.inprocess import running
from worker.runtime import Runtime, get_runtime, reset_runtime
from worker.settings import Settings
from worker.sweep import evaluate_range

D, T, OUT = table(Delivery), table(CallTask), table(OutboxMessage)
DAY = date(2026, 11, 23)
MATCHED = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # in quiet hours' window
NOW = MATCHED + timedelta(minutes=10)  # the tick: the sweep's own jobs are 10 minutes old
DAY1 = timedelta(days=1)
WAITING = {"pending", "retry", "deferred", "sending"}
# Rows that need a job: lost ones, a retry whose backoff is over, a quiet-hours window that
# opened, a journey step that came due. Not: rows queued moments ago, or not yet due.
EXPECTED_REQUEUE = ("lost", "retry_over", "deferred_open", "step_due")
BECAME_DUE = EXPECTED_REQUEUE[1:]  # nobody queued them since: no job of theirs can be waiting
RABBITMQ_URL = os.environ.get("MILEPOST_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def queued() -> list[int]:
    """The delivery ids of the `deliver` jobs waiting on the in-process broker."""
    waiting = actors.broker.queues.get("deliver")
    jobs = [Message.decode(data) for data in list(waiting.queue)] if waiting else []
    return sorted(i for job in jobs for i in job.args[0])


def snapshot(rt: Runtime) -> list[Any]:
    with rt.engine.connect() as conn:
        return [*conn.execute(select(D).order_by(D.c.id)), *conn.execute(select(T))]


def set_rows(rt: Runtime, ids: list[int], **values: Any) -> None:
    with rt.engine.begin() as conn:
        conn.execute(update(D).where(D.c.id.in_(ids)).values(**values))


def seed(rt: Runtime) -> dict[str, list[int]]:
    """A demo dealer swept at MATCHED, its rows put in every state the tick must handle."""
    generate(rt.settings.database_url, customers=60, seed=5, today=DAY)
    due = evaluate_range(rt, 0, 10**9, MATCHED.isoformat(), now=MATCHED)
    with rt.engine.connect() as conn:
        later = list(conn.execute(select(D.c.id).where(D.c.due_at > NOW)).scalars())
        customer = conn.execute(select(D.c.customer_id).limit(1)).scalar_one()
    assert len(due) >= 10 and len(later) >= 2, "the demo dealer should give every kind of row"
    rows = {
        "lost": due[:2],  # queued by the sweep 10 minutes ago, still pending: the job was lost
        "fresh": due[2:3],  # queued a minute ago: its job is surely still in the queue
        "stale_sending": due[3:4],
        "recent_sending": due[4:5],
        "retry_over": due[5:6],  # backoff over: nobody queued it since
        "deferred_open": due[6:7],  # quiet-hours window opened a minute ago
        "deferred_shut": due[7:8],
        "step_due": later[:1],  # a journey's later step, due since 5 minutes (after its insert)
        "step_later": later[1:2],
    }
    set_rows(rt, rows["fresh"], updated_at=NOW - timedelta(minutes=1))
    set_rows(rt, rows["stale_sending"], status="sending", updated_at=NOW - timedelta(minutes=11))
    set_rows(rt, rows["recent_sending"], status="sending", updated_at=NOW - timedelta(minutes=2))
    set_rows(rt, rows["retry_over"], status="retry", due_at=NOW - timedelta(seconds=5))
    set_rows(rt, rows["deferred_open"], status="deferred", due_at=NOW - timedelta(minutes=1))
    set_rows(rt, rows["deferred_shut"], status="deferred", due_at=NOW + timedelta(hours=1))
    set_rows(rt, rows["step_due"], due_at=NOW - timedelta(minutes=5))
    set_rows(rt, due[8:], status="sent")
    with rt.engine.begin() as conn:
        for delivery_id, due_by in ((due[8], NOW - timedelta(minutes=1)), (due[9], NOW + DAY1)):
            conn.execute(
                insert(T).values(
                    delivery_id=delivery_id,
                    customer_id=customer,
                    campaign="test",
                    script="call",
                    priority=50,
                    due_by=due_by,
                    created_at=MATCHED,
                )
            )
    return rows


@pytest.fixture
def at_tick() -> Iterator[None]:
    actors.broker.flush_all()
    with time_machine.travel(NOW, tick=True):
        yield
    actors.broker.flush_all()


def check_double_tick(rt: Runtime) -> None:
    rows = seed(rt)
    expected = sorted(i for kind in EXPECTED_REQUEUE for i in rows[kind])

    first = scheduler.tick(NOW)

    assert first == {"unknown": 1, "expired_calls": 1, "requeued": len(expected)}
    assert queued() == expected
    after_first = snapshot(rt)
    with rt.engine.connect() as conn:
        statuses = dict(conn.execute(select(D.c.id, D.c.status)).all())
    assert statuses[rows["stale_sending"][0]] == "unknown"
    assert statuses[rows["recent_sending"][0]] == "sending"

    # A restart, or a second scheduler: the same moment and a moment later change nothing.
    assert scheduler.tick(NOW) == {"unknown": 0, "expired_calls": 0, "requeued": 0}
    assert scheduler.tick(NOW + timedelta(seconds=30))["requeued"] == 0
    assert queued() == expected and snapshot(rt) == after_first

    # Even a duplicate job per row (a tick that raced this one) sends nothing twice.
    enqueue_all(actors.broker, actors.deliver_jobs(expected))
    with running(actors.broker, threads=4) as drain:
        drain()
    # A second send would break the outbox's unique key and fail drain(); check it plainly too.
    with rt.engine.connect() as conn:
        query = select(D.c.id, D.c.status, D.c.attempts).where(D.c.id.in_(expected))
        done = {row.id: (row.status, row.attempts) for row in conn.execute(query)}
        outbox = conn.execute(
            select(OUT.c.delivery_id, func.count()).group_by(OUT.c.delivery_id)
        ).all()
    assert all(status not in WAITING and tries <= 1 for status, tries in done.values()), done
    assert all(count == 1 for _, count in outbox)


def test_a_double_tick_requeues_each_due_row_once_and_changes_nothing_the_second_time(
    runtime: Runtime, at_tick: None
) -> None:
    check_double_tick(runtime)


@pytest.mark.postgres
def test_a_double_tick_on_postgresql(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, at_tick: None
) -> None:
    monkeypatch.setenv("MILEPOST_DATABASE_URL", pg_url)
    reset_runtime()
    try:
        check_double_tick(get_runtime())
    finally:
        reset_runtime()


@pytest.mark.postgres
def test_two_schedulers_ticking_at_once_take_each_row_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILEPOST_DATABASE_URL", pg_url)
    reset_runtime()
    rt = get_runtime()
    try:
        rows = seed(rt)
        second: list[int] = []
        with rt.engine.connect() as first_conn, first_conn.begin():
            first = scheduler.take_due(first_conn, NOW)

            def other() -> None:  # blocks on the first's row locks, then finds them taken
                with rt.engine.begin() as conn:
                    second.extend(scheduler.take_due(conn, NOW))

            racer = threading.Thread(target=other)
            racer.start()
            racer.join(timeout=0.5)
        racer.join(timeout=10)
        assert sorted(first) == sorted(i for kind in EXPECTED_REQUEUE for i in rows[kind])
        assert second == []
    finally:
        reset_runtime()


@pytest.fixture
def redis_broker(redis_url: str) -> Iterator[RedisBroker]:
    """Milepost's Redis broker on the test's own, emptied, Redis database."""
    broker = make_broker(Settings(broker_url=redis_url, metrics_port=0))
    assert isinstance(broker, RedisBroker)
    yield broker
    broker.close()


def held(broker: RedisBroker) -> list[int]:
    """The delivery ids of the `deliver` jobs Redis holds, waiting or taken by a worker."""
    bodies = cast(list[bytes], broker.client.hvals("dramatiq:deliver.msgs"))  # not decoded
    return sorted(i for body in bodies for i in Message.decode(body).args[0])


@pytest.mark.redis
@pytest.mark.parametrize("job", ["waiting", "taken-by-a-worker", "delayed"])
def test_while_redis_holds_a_deliver_job_no_waiting_rows_job_is_queued_again(
    runtime: Runtime, redis_broker: RedisBroker, job: str
) -> None:
    rows = seed(runtime)
    # The "lost" rows' job is in fact still held, behind a backlog slower than the wait.
    if job == "delayed":  # throttled: it waits out its delay, leaving its rows untouched
        redis_broker.enqueue(actors.deliver.message(rows["lost"]), delay=60_000)
    else:
        enqueue_all(redis_broker, actors.deliver_jobs(rows["lost"]))
    if job == "taken-by-a-worker":  # it runs, or its worker was killed: Redis gives it back
        assert next(redis_broker.consume("deliver")) is not None

    counts = [scheduler.tick(NOW + timedelta(minutes=m), broker=redis_broker) for m in (0, 10)]

    became_due = sorted(i for kind in BECAME_DUE for i in rows[kind])
    assert [c["requeued"] for c in counts] == [len(became_due), 0]
    assert held(redis_broker) == sorted(became_due + (rows["lost"] if job != "delayed" else []))


@pytest.mark.redis
@pytest.mark.parametrize("stuck", [False, True], ids=["no-job", "a-stuck-delayed-job"])
def test_once_redis_holds_no_deliver_job_a_lost_rows_job_is_queued_again(
    runtime: Runtime, redis_broker: RedisBroker, stuck: bool
) -> None:
    rows = seed(runtime)  # the sweep's jobs of 10 minutes ago are gone: Redis restarted, say
    if stuck:  # 10 minutes overdue: a delayed job Dramatiq forgot on a Redis connection error
        redis_broker.enqueue(actors.deliver.message(rows["deferred_shut"]), delay=-600_000)

    counts = scheduler.tick(NOW, broker=redis_broker)

    expected = sorted(i for kind in EXPECTED_REQUEUE for i in rows[kind])
    assert counts["requeued"] == len(expected)
    assert held(redis_broker) == expected


@pytest.fixture(params=["in-process", "redis", "rabbitmq"])
def any_broker(request: pytest.FixtureRequest) -> Iterator[tuple[dramatiq.Broker, str]]:
    """Each kind of broker, with a queue name of its own (deleted afterwards)."""
    url, queue = None, f"count-{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    elif request.param == "rabbitmq":
        url = RABBITMQ_URL
        if problem := broker_problem(url):
            require_service("RabbitMQ", problem)
    broker = make_broker(Settings(broker_url=url, metrics_port=0))
    yield broker, queue
    if request.param == "rabbitmq":
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            broker.channel.queue_delete(name)  # type: ignore[attr-defined]
    broker.close()


def test_every_broker_counts_the_jobs_it_holds_delayed_ones_included(
    any_broker: tuple[dramatiq.Broker, str],
) -> None:
    broker, queue = any_broker
    broker.declare_queue(queue)
    job: Message[Any] = Message(
        queue_name=queue, actor_name="deliver", args=([1],), kwargs={}, options={}
    )
    assert scheduler.queued_jobs(broker, queue) == 0

    broker.enqueue(job.copy(), delay=60_000)
    for _ in range(3):
        broker.enqueue(job.copy())

    assert scheduler.queued_jobs(broker, queue) == 4


@pytest.mark.parametrize(
    ("zone", "now", "fires"),
    [
        # 09:00 in Shanghai: today's sweep has run; the next is tomorrow 08:00 (00:00 UTC).
        ("Asia/Shanghai", datetime(2026, 11, 23, 1, 0, tzinfo=UTC), datetime(2026, 11, 24, 0, 0)),
        # The same instant is 20:00 the day before in New York: 08:00 EST is 13:00 UTC.
        ("America/New_York", datetime(2026, 11, 23, 1, 0), datetime(2026, 11, 23, 13, 0)),
        # Across Berlin's spring change the sweep stays at 08:00 local: 06:00 UTC, not 07:00.
        ("Europe/Berlin", datetime(2026, 3, 28, 8, 30), datetime(2026, 3, 29, 6, 0)),
    ],
)
def test_the_daily_sweep_fires_at_the_dealers_local_time(
    zone: str, now: datetime, fires: datetime
) -> None:
    settings = Settings(timezone=zone, sweep_time=time(8, 0))
    trigger = scheduler.sweep_trigger(settings)

    fire = trigger.get_next_fire_time(None, now.replace(tzinfo=UTC))

    assert fire is not None and fire.astimezone(UTC) == fires.replace(tzinfo=UTC)
    assert fire.astimezone(ZoneInfo(zone)).time() == time(8, 0)
    job = scheduler.build(settings).get_job("daily-sweep")
    assert job is not None and str(job.trigger) == str(trigger)


def test_an_unknown_row_an_operator_releases_goes_out_once_at_the_next_tick_busy_broker_or_not(
    runtime: Runtime, at_tick: None
) -> None:
    rows = seed(runtime)
    scheduler.tick(NOW)  # the row a dead worker left `sending` becomes `unknown`
    (row,) = rows["stale_sending"]
    listed = CliRunner().invoke(app, ["deliveries", "--status", "unknown"])
    assert listed.exit_code == 0 and f"\n│ {row} " in listed.output.replace("┃", "│")
    assert queued().count(row) == 0  # never resent on its own

    released = CliRunner().invoke(app, ["deliveries", "--release", str(row)])
    assert released.exit_code == 0 and "Released 1 of 1" in released.output
    again = CliRunner().invoke(app, ["deliveries", "--release", str(row)])
    assert again.exit_code == 1 and "Only rows in status `unknown`" in again.output

    # Other rows' jobs still wait on the broker; the released row is queued all the same.
    assert queued()
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=2), tick=True):
        counts = scheduler.tick()
        assert counts["requeued"] >= 1 and queued().count(row) == 1
        with running(actors.broker, threads=2) as drain:
            drain()
    with runtime.engine.connect() as conn:
        status = conn.execute(select(D.c.status).where(D.c.id == row)).scalar_one()
        sent = conn.execute(select(func.count()).where(OUT.c.delivery_id == row)).scalar_one()
    assert (status, sent) == ("sent", 1)
