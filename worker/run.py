"""Commands' shared work: a whole sweep, run here (in-process) or handed to the workers."""

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
) -> datetime:
    """Evaluate every vehicle and deliver what is due, in this process; returns the start time.

    ``deliver=False`` stops at the ledger: the due rows wait for `release_due` (benchmarks).
    """
    from worker import actors, sweep
    from worker.inprocess import running

    rt = get_runtime()
    rt.evaluator  # noqa: B018 — build the engine before the worker threads race for it
    started = datetime.now(UTC)
    ranges = sweep.plan_ranges(rt)
    on_start(len(ranges))
    progress = _Progress(advance)
    actors.broker.add_middleware(progress)
    try:
        queues = None if deliver else {"evaluate"}
        with running(actors.broker, rt.settings.worker_threads, queues) as drain:
            messages = [actors.evaluate.message(lo, hi, as_of.isoformat()) for lo, hi in ranges]
            sweep.enqueue_all(actors.broker, messages)
            drain()
            if deliver:
                release_due(actors.broker, as_of=max(as_of, datetime.now(UTC)))
                drain()
    finally:
        actors.broker.middleware.remove(progress)
    return started


def release_due(broker: dramatiq.Broker, as_of: datetime, quiet_s: float = 0) -> int:
    """Queue a `deliver` job for every row that is due and waiting; returns how many."""
    from datetime import timedelta

    from worker import actors, ledger, sweep

    rt = get_runtime()
    with rt.engine.connect() as conn:
        ids = ledger.due_ids(conn, as_of, timedelta(seconds=quiet_s))
    sweep.enqueue_all(broker, [actors.deliver.message(i) for i in ids])
    return len(ids)
