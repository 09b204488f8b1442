"""Commands' shared work: a whole sweep, run here (in-process) or handed to the workers.

Either way the sweep is recorded as a run (worker/sweep_runs.py), which any machine can follow.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import dramatiq

from worker.runtime import get_runtime


class _Progress(dramatiq.Middleware):
    """Counts finished `evaluate` messages, for a progress bar."""

    def __init__(self, advance: Callable[[], None]) -> None:
        self.advance = advance

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if message.actor_name == "evaluate":
            self.advance()


def as_of_for(day: date | None) -> datetime:
    """The moment a sweep evaluates: now, or the given day at the configured sweep time."""
    settings = get_runtime().settings
    if day is None:
        return datetime.now(UTC)
    return datetime.combine(day, settings.sweep_time, settings.tz)


def sweep_inprocess(
    as_of: datetime,
    on_start: Callable[[int], None] = lambda total: None,
    advance: Callable[[], None] = lambda: None,
    *,
    deliver: bool = True,
) -> int:
    """Evaluate every vehicle and deliver what is due, in this process; returns the run's id.

    ``deliver=False`` stops at the ledger: the due rows wait for `release_due` (benchmarks).
    """
    from worker import actors, sweep, sweep_runs
    from worker.inprocess import running

    rt = get_runtime()
    rt.evaluator  # noqa: B018 — build the engine before the worker threads race for it
    run_id = sweep_runs.create(rt.engine, as_of)
    ranges = sweep.plan_run(rt, run_id)
    on_start(len(ranges))
    progress = _Progress(advance)
    actors.broker.add_middleware(progress)
    try:
        queues = None if deliver else {"evaluate"}
        with running(actors.broker, rt.settings.worker_threads, queues) as drain:
            iso = as_of.isoformat()
            messages = [actors.evaluate.message(lo, hi, iso, run_id) for lo, hi in ranges]
            sweep.enqueue_all(actors.broker, messages)
            drain()
            if deliver:
                release_due(actors.broker, as_of=max(as_of, datetime.now(UTC)))
                drain()
    finally:
        actors.broker.middleware.remove(progress)
    return run_id


def sweep_queued(as_of: datetime) -> int:
    """Record a sweep run and queue its `sweep` for the workers; returns the run's id."""
    from worker import actors, sweep_runs

    run_id = sweep_runs.create(get_runtime().engine, as_of)
    actors.sweep.send(as_of.isoformat(), run_id=run_id)
    return run_id


def release_due(broker: dramatiq.Broker, as_of: datetime, quiet_s: float = 0) -> int:
    """Queue a `deliver` job for every row that is due and waiting; returns how many."""
    from datetime import timedelta

    from worker import actors, ledger, sweep

    rt = get_runtime()
    with rt.engine.connect() as conn:
        ids = ledger.due_ids(conn, as_of, timedelta(seconds=quiet_s))
    sweep.enqueue_all(broker, actors.deliver_jobs(ids))
    return len(ids)
