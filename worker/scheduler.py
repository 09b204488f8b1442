"""The scheduler daemon: exactly one per deployment; every tick it does is safe to repeat.

A double tick (two schedulers by mistake, a restart in the middle) changes nothing: the sweep
is deduplicated by the ledger's unique key, a requeued row is claimed at most once, and the
other jobs are conditional UPDATEs.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from worker import calls, ledger
from worker.runtime import get_runtime

log = logging.getLogger("milepost.scheduler")
TICK_S = 30
STALE_SENDING = timedelta(minutes=10)  # far longer than any provider timeout
REQUEUE_QUIET = timedelta(seconds=60)  # a row queued this recently still has its job


def daily_sweep() -> None:
    from worker import actors

    as_of = datetime.now(UTC)
    actors.sweep.send(as_of.isoformat())
    log.info("daily sweep queued as of %s", as_of.isoformat())


def tick(now: datetime | None = None) -> dict[str, int]:
    """Housekeeping: stale `sending` rows to `unknown`, due rows requeued, late calls expired."""
    from worker import actors, sweep

    now = now or datetime.now(UTC)
    rt = get_runtime()
    with rt.engine.begin() as conn:
        unknown = ledger.mark_stale_unknown(conn, now, STALE_SENDING)
        expired = calls.expire(conn, now)
        due = ledger.due_ids(conn, now, REQUEUE_QUIET)
    sweep.enqueue_all(actors.broker, [actors.deliver.message(i) for i in due])
    counts = {"unknown": unknown, "expired_calls": expired, "requeued": len(due)}
    if any(counts.values()):
        log.info("tick: %s", counts)
    return counts


def run() -> None:
    """Run forever: the daily sweep at MILEPOST_SWEEP_TIME local, housekeeping every 30 s."""
    rt = get_runtime()
    rt.campaigns  # noqa: B018 — refuse to start on campaign files that do not validate
    scheduler = BlockingScheduler(timezone=rt.settings.tz)
    at = rt.settings.sweep_time
    scheduler.add_job(
        daily_sweep,
        CronTrigger(hour=at.hour, minute=at.minute, timezone=rt.settings.tz),
        id="daily-sweep",
        misfire_grace_time=3600,
        coalesce=True,
        max_instances=1,
    )
    scheduler.add_job(tick, "interval", seconds=TICK_S, id="tick", coalesce=True, max_instances=1)
    log.info("scheduler started: sweep daily at %s %s", at.strftime("%H:%M"), rt.settings.timezone)
    scheduler.start()
