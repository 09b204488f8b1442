"""The scheduler daemon: exactly one per deployment; every tick it does is safe to repeat.

A double tick (two schedulers by mistake, a restart in the middle) changes nothing: the sweep
is deduplicated by the ledger's unique key, the rows a tick requeues are claimed by a
conditional UPDATE so a second tick finds none, a duplicate job finds its row already claimed,
and the other jobs are conditional UPDATEs.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Connection, or_, select, update

from worker import calls, ledger
from worker.enqueue import enqueue_all
from worker.runtime import get_runtime
from worker.settings import Settings, get_settings

log = logging.getLogger("milepost.scheduler")
D = ledger.D
# How often the tick runs and its two waits are settings (MILEPOST_SCHEDULER_TICK_S, …). A row
# queued MILEPOST_REQUEUE_QUIET_S ago and still waiting lost its job (or sits behind a long
# backlog, where a second job costs one failed claim): long, so a backlog is not queued again
# and again.
REQUEUE_LIMIT = 10_000  # per tick: 20k rows a minute, and a tick stays short
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
) -> list[int]:
    """Claim the rows that need a (new) `deliver` job; their ids, most important first.

    A row needs one when it became due after it was last touched (a later journey step, a
    retry's backoff over, a quiet-hours window open: nobody has queued it since), or when it
    was queued ``quiet`` (default: MILEPOST_REQUEUE_QUIET_S) ago and still waits. Stamping
    `updated_at` is the claim: a second tick, at once or from a second scheduler, finds nothing
    to take.
    """
    quiet = quiet or timedelta(seconds=get_settings().requeue_quiet_s)
    needs_job = (
        D.c.status.in_(WAITING),
        D.c.due_at <= now,
        or_(D.c.updated_at < D.c.due_at, D.c.updated_at <= now - quiet),
    )
    query = select(D.c.id).where(*needs_job).order_by(D.c.priority.desc(), D.c.due_at)
    ids = list(conn.execute(query.limit(limit)).scalars())
    if not ids:
        return []
    # PostgreSQL re-checks the conditions after waiting for a concurrent tick's row locks.
    stamp = update(D).where(D.c.id.in_(ids), *needs_job).values(updated_at=now)
    won = set(conn.execute(stamp.returning(D.c.id)).scalars())
    return [i for i in ids if i in won]


def tick(now: datetime | None = None) -> dict[str, int]:
    """Housekeeping: stale `sending` rows to `unknown`, due rows requeued, late calls expired."""
    from worker import actors

    now = now or datetime.now(UTC)
    rt = get_runtime()
    stale, quiet = rt.settings.stale_sending_s, rt.settings.requeue_quiet_s
    with rt.engine.begin() as conn:
        unknown = ledger.mark_stale_unknown(conn, now, timedelta(seconds=stale))
        expired = calls.expire(conn, now)
        due = take_due(conn, now, quiet=timedelta(seconds=quiet))
    # Queued after the commit: if the broker is down the claim stands and the rows come round
    # again after MILEPOST_REQUEUE_QUIET_S; the opposite order could queue jobs for an undone claim.
    enqueue_all(actors.broker, actors.deliver_jobs(due))
    counts = {"unknown": unknown, "expired_calls": expired, "requeued": len(due)}
    if any(counts.values()):
        log.info("tick: %s", counts)
    return counts


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
    return scheduler


def run() -> None:
    """Run until SIGTERM or Ctrl-C: the daily sweep at MILEPOST_SWEEP_TIME local, and ticks."""
    rt = get_runtime()
    rt.campaigns  # noqa: B018 — refuse to start on campaign files that do not validate
    scheduler = build(rt.settings)

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
