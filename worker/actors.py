"""Dramatiq actors, thin on purpose: each loads what it needs, calls one function, records."""

from __future__ import annotations

import dramatiq

from worker import deliver as delivering
from worker import sweep as sweeping
from worker import throttle
from worker.broker import make_broker
from worker.runtime import get_runtime
from worker.settings import get_settings

broker = make_broker(get_settings())
dramatiq.set_broker(broker)

DAY_MS = 24 * 3600 * 1000


@dramatiq.actor(queue_name="sweep", max_retries=3, max_age=DAY_MS)
def sweep(as_of: str, batch: int | None = None) -> None:
    """Split the fleet into vehicle-id ranges and queue one `evaluate` per range."""
    ranges = sweeping.plan_ranges(get_runtime(), batch)
    messages = [evaluate.message(lo, hi, as_of) for lo, hi in ranges]
    sweeping.enqueue_all(broker, messages)


@dramatiq.actor(queue_name="evaluate", max_retries=5, max_age=DAY_MS)
def evaluate(lo: int, hi: int, as_of: str) -> None:
    """Evaluate every campaign for vehicles lo..hi; queue the new rows that are due."""
    due = sweeping.evaluate_range(get_runtime(), lo, hi, as_of)
    sweeping.enqueue_all(broker, [deliver.message(delivery_id) for delivery_id in due])


@dramatiq.actor(queue_name="deliver", max_retries=3, max_age=DAY_MS)
def deliver(delivery_id: int, throttled: int = 0) -> None:
    """Send one ledger row through its channel, once."""
    # Transient provider trouble leaves the row in `retry` with its next due time; the
    # scheduler's release tick queues it again, so backoffs never hold a worker thread.
    outcome = delivering.deliver(get_runtime(), delivery_id)
    if outcome.status == "throttled":
        # Throttling is not a failure: come back later without spending a retry.
        delay_ms = int(throttle.wait_s(throttled) * 1000)
        deliver.send_with_options(args=(delivery_id, throttled + 1), delay=delay_ms)
