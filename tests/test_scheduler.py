"""The scheduler: its tick releases what is due exactly once, and the sweep fires at local time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from dramatiq import Message
from sqlalchemy import func, insert, select, update

from crm.demo import generate
from crm.models import CallTask, Delivery, OutboxMessage, table
from worker import actors, scheduler
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
        "step_due": later[:1],  # a journey's later step, due since an hour
        "step_later": later[1:2],
    }
    set_rows(rt, rows["fresh"], updated_at=NOW - timedelta(minutes=1))
    set_rows(rt, rows["stale_sending"], status="sending", updated_at=NOW - timedelta(minutes=11))
    set_rows(rt, rows["recent_sending"], status="sending", updated_at=NOW - timedelta(minutes=2))
    set_rows(rt, rows["retry_over"], status="retry", due_at=NOW - timedelta(seconds=5))
    set_rows(rt, rows["deferred_open"], status="deferred", due_at=NOW - timedelta(minutes=1))
    set_rows(rt, rows["deferred_shut"], status="deferred", due_at=NOW + timedelta(hours=1))
    set_rows(rt, rows["step_due"], due_at=NOW - timedelta(hours=1))
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
