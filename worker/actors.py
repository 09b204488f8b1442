"""Dramatiq actors, thin on purpose: each loads what it needs, calls one function, records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dramatiq

from worker import deliver as delivering
from worker import ledger_stats, throttle
from worker import sweep as sweeping
from worker.broker import make_broker
from worker.logmask import WorkerLogs
from worker.runtime import get_runtime
from worker.settings import get_settings

broker = make_broker(get_settings())
broker.add_middleware(WorkerLogs())  # the `dramatiq worker.actors` processes log masked
dramatiq.set_broker(broker)

DAY_MS = 24 * 3600 * 1000
# Rows per `deliver` message. A message costs the broker about a millisecond of CPU (fetch,
# ack, middleware): as much as the delivery itself, so it carries several rows. Each row is
# still claimed, sent and recorded alone, so a worker killed mid-message leaves at most one
# row in `sending` per thread; the rows not reached are claimed again when it is redelivered.
DELIVER_BATCH = 10


@dramatiq.actor(queue_name="sweep", max_retries=3, max_age=DAY_MS)
def sweep(as_of: str, batch: int | None = None, run_id: int | None = None) -> None:
    """Split the fleet into vehicle-id ranges and queue one `evaluate` per range."""
    ranges = sweeping.plan_run(get_runtime(), run_id, batch)
    messages = [evaluate.message(lo, hi, as_of, run_id) for lo, hi in ranges]
    sweeping.enqueue_all(broker, messages)


@dramatiq.actor(queue_name="evaluate", max_retries=5, max_age=DAY_MS)
def evaluate(lo: int, hi: int, as_of: str, run_id: int | None = None) -> None:
    """Evaluate every campaign for vehicles lo..hi; queue the new rows that are due."""
    rt = get_runtime()
    due = sweeping.evaluate_range(rt, lo, hi, as_of, run_id=run_id)
    if due:  # before their jobs go out: each reads the ledger with a plan fit for its size
        ledger_stats.refresh(rt.engine)
    sweeping.enqueue_all(broker, deliver_jobs(due))


@dramatiq.actor(queue_name="deliver", max_retries=3, max_age=DAY_MS)
def deliver(delivery_ids: list[int] | int, throttled: int = 0) -> None:
    """Send ledger rows through their channels, one after the other, each at most once."""
    if isinstance(delivery_ids, int):  # a message queued before jobs carried several rows
        delivery_ids = [delivery_ids]
    # Transient provider trouble leaves a row in `retry` with its next due time; the
    # scheduler's release tick queues it again, so backoffs never hold a worker thread.
    done = delivering.deliver_all(get_runtime(), delivery_ids)
    if done.throttled:
        # Throttling is not a failure: come back later without spending a retry.
        delay_ms = int(throttle.wait_s(throttled) * 1000)
        deliver.send_with_options(
            args=([*done.raised, *done.throttled], throttled + 1), delay=delay_ms
        )
    elif done.raised:  # Dramatiq retries the message; the rows already done find nothing to claim
        raise delivering.DeliveryJobError(f"deliveries {done.raised} raised; see the log")


def deliver_jobs(
    delivery_ids: Iterable[int], batch: int = DELIVER_BATCH
) -> list[dramatiq.Message[Any]]:
    """`deliver` messages for ``delivery_ids``, ``batch`` rows each, in order."""
    ids = list(delivery_ids)
    return [deliver.message(ids[i : i + batch]) for i in range(0, len(ids), batch)]
