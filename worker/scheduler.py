"""The scheduler daemon: exactly one per deployment; every tick it does is safe to repeat.

A double tick (two schedulers by mistake, a restart in the middle) changes nothing: the sweep
is deduplicated by the ledger's unique key, the rows a tick requeues are claimed by a
conditional UPDATE so a second tick finds none, a duplicate job finds its row already claimed,
and the other jobs are conditional UPDATEs.

A waiting row's job counts as lost only while the broker holds no `deliver` job at all: a
backlog that drains slower than MILEPOST_REQUEUE_QUIET_S was otherwise queued again and again,
each copy a failed claim that slowed the drain further (a storm of duplicate jobs).
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import dramatiq
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis, dq_name
from sqlalchemy import Connection, or_, select, update

from worker import calls, ledger
from worker.enqueue import enqueue_all
from worker.runtime import get_runtime
from worker.settings import Settings, get_settings

log = logging.getLogger("milepost.scheduler")
D = ledger.D
# How often the tick runs and its two waits are settings (MILEPOST_SCHEDULER_TICK_S, …). A row
# queued MILEPOST_REQUEUE_QUIET_S ago and still waiting lost its job if the broker holds none.
REQUEUE_LIMIT = 10_000  # per tick: 20k rows a minute, and a tick stays short
# A worker moves a delayed job to its queue within a second or two of its eta. On a Redis
# connection error Dramatiq forgets the delayed jobs a worker took, which stay taken while it
# lives: a job this late is one of those, and must not hold the requeue of lost jobs back.
STUCK_AFTER_MS = 60_000
WAITING = ("pending", "retry", "deferred")


def sweep_trigger(settings: Settings) -> CronTrigger:
    """Every day at MILEPOST_SWEEP_TIME in the dealer's zone, whatever the server's zone."""
    at = settings.sweep_time
    return CronTrigger(hour=at.hour, minute=at.minute, timezone=settings.tz)


def daily_sweep() -> None:
    from worker import run

    as_of = datetime.now(UTC)
    run_id = run.sweep_queued(as_of)  # recorded, so `milepost sweep --watch RUN` follows it
    log.info("daily sweep %d queued as of %s", run_id, as_of.isoformat())


def take_due(
    conn: Connection,
    now: datetime,
    limit: int = REQUEUE_LIMIT,
    *,
    quiet: timedelta | None = None,
    lost: bool = True,
) -> list[int]:
    """Claim the rows that need a (new) `deliver` job; their ids, most important first.

    A row needs one when it became due after it was last touched (a later journey step, a
    retry's backoff over, a quiet-hours window open: nobody has queued it since), or, with
    ``lost``, when it was queued ``quiet`` (default: MILEPOST_REQUEUE_QUIET_S) ago and still
    waits. Stamping `updated_at` is the claim: a second tick, at once or from a second
    scheduler, finds nothing to take.
    """
    quiet = quiet or timedelta(seconds=get_settings().requeue_quiet_s)
    became_due = D.c.updated_at < D.c.due_at
    needs_job = (
        D.c.status.in_(WAITING),
        D.c.due_at <= now,
        or_(became_due, D.c.updated_at <= now - quiet) if lost else became_due,
    )
    query = select(D.c.id).where(*needs_job).order_by(D.c.priority.desc(), D.c.due_at)
    # PostgreSQL: a second scheduler's tick skips the rows this one holds instead of waiting
    # for them (SQLite has one writer at a time anyway; SQLAlchemy renders nothing there).
    query = query.limit(limit).with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return []
    # PostgreSQL re-checks the conditions after waiting for a concurrent tick's row locks.
    stamp = update(D).where(D.c.id.in_(ids), *needs_job).values(updated_at=now)
    won = set(conn.execute(stamp.returning(D.c.id)).scalars())
    return [i for i in ids if i in won]


def queued_jobs(broker: dramatiq.Broker, queue: str = "deliver") -> int:
    """How many ``queue`` jobs, delayed ones included, the broker holds for a worker to run.

    Redis: waiting or taken and not yet acked (a killed worker's come back once its heartbeat
    is stale), delayed ones unless stuck. RabbitMQ: waiting; it gives a killed worker's back at
    once, but cannot count what live workers took (delayed ones too). In-process: waiting or
    running.
    """
    if isinstance(broker, RedisBroker):
        # A job's body stays in these hashes from its enqueue to its ack.
        key = f"{broker.namespace}:{queue}"
        delayed = cast(list[bytes], broker.client.hvals(f"{key}.DQ.msgs"))
        late = current_millis() - STUCK_AFTER_MS
        live = sum(Message.decode(body).options.get("eta", 0) > late for body in delayed)
        return int(broker.client.hlen(f"{key}.msgs")) + live
    if isinstance(broker, RabbitmqBroker):
        ready, ready_later, _dead = broker.get_queue_message_counts(queue)
        return ready + ready_later
    if isinstance(broker, StubBroker):
        held = (broker.queues.get(name) for name in (queue, dq_name(queue)))
        return sum(waiting.unfinished_tasks for waiting in held if waiting)
    raise TypeError(f"cannot count the jobs of a {type(broker).__name__}")


def tick(now: datetime | None = None, broker: dramatiq.Broker | None = None) -> dict[str, int]:
    """Housekeeping: stale `sending` rows to `unknown`, due rows requeued, late calls expired."""
    from worker import actors

    now = now or datetime.now(UTC)
    broker = broker or actors.broker
    rt = get_runtime()
    stale, quiet = rt.settings.stale_sending_s, rt.settings.requeue_quiet_s
    # While the broker holds any `deliver` job, a waiting row's may be among them: only the rows
    # that became due are queued, the others wait for the backlog to drain. Asked first, so a
    # broker that does not answer fails the tick before anything is claimed.
    held = queued_jobs(broker, actors.deliver.queue_name)
    with rt.engine.begin() as conn:
        unknown = ledger.mark_stale_unknown(conn, now, timedelta(seconds=stale))
        expired = calls.expire(conn, now)
        due = take_due(conn, now, quiet=timedelta(seconds=quiet), lost=held == 0)
    # Queued after the commit: if the broker is down the claim stands and the rows come round
    # again after MILEPOST_REQUEUE_QUIET_S; the opposite order could queue jobs for an undone claim.
    enqueue_all(broker, actors.deliver_jobs(due))
    counts = {"unknown": unknown, "expired_calls": expired, "requeued": len(due)}
    if any(counts.values()) or held:
        log.info("tick: %s; the broker held %d deliver jobs", counts, held)
    return counts


def beat(heartbeat: Path) -> None:
    """Record that a tick finished: `milepost health --scheduler` reads the file's age."""
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    heartbeat.touch()


def build(settings: Settings) -> BlockingScheduler:
    """The scheduler with its two jobs: the daily sweep and the housekeeping tick."""
    scheduler = BlockingScheduler(timezone=settings.tz)
    scheduler.add_job(
        daily_sweep,
        sweep_trigger(settings),
        id="daily-sweep",
        misfire_grace_time=3600,  # a restart at 08:05 still runs today's sweep
        coalesce=True,
        max_instances=1,
    )
    scheduler.add_job(
        tick,
        "interval",
        seconds=settings.scheduler_tick_s,
        id="tick",
        next_run_time=datetime.now(UTC),  # at once: a restart releases what is due right away
        coalesce=True,
        max_instances=1,
    )

    # Only a tick that finished beats: a tick that hangs or fails (database or broker down)
    # leaves the heartbeat to age until the health check says so.
    def ticked(event: JobExecutionEvent) -> None:
        if event.job_id == "tick":
            beat(settings.scheduler_heartbeat)

    scheduler.add_listener(ticked, EVENT_JOB_EXECUTED)
    return scheduler


def run() -> None:
    """Run until SIGTERM or Ctrl-C: the daily sweep at MILEPOST_SWEEP_TIME local, and ticks."""
    rt = get_runtime()
    rt.campaigns  # noqa: B018 — refuse to start on campaign files that do not validate
    scheduler = build(rt.settings)
    # A restarted container keeps its /tmp: until this run's first tick, no heartbeat.
    rt.settings.scheduler_heartbeat.unlink(missing_ok=True)

    # As PID 1 in a container, a process without a SIGTERM handler ignores the signal and
    # Docker kills it 10 s later. Raising KeyboardInterrupt unwinds the scheduler's loop
    # (releasing its locks), then shutdown waits for a tick in progress and we exit 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    at = rt.settings.sweep_time
    log.info("scheduler started: sweep daily at %s %s", at.strftime("%H:%M"), rt.settings.timezone)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        if scheduler.running:
            scheduler.shutdown(wait=True)
    log.info("scheduler stopped")
