"""Run queued work to completion inside this process: the embedded default and the tests."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker


def drain(broker: dramatiq.Broker, threads: int = 4) -> None:
    """Process every ready message, including those the work itself queues, then stop.

    Rows waiting for a retry or a quiet-hours window stay in the ledger; `release_due`
    (the scheduler's tick) queues them again when they are due.
    """
    if not isinstance(broker, StubBroker):
        raise TypeError("drain() runs the in-process broker only; start `milepost worker`")
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=50)
    worker.start()
    try:
        while True:
            names = [name for name in broker.queues if not name.endswith(".DQ")]
            for name in names:
                broker.join(name, fail_fast=True)
            worker.join()
            if all(queue.unfinished_tasks == 0 for queue in broker.queues.values()):
                break
    finally:
        worker.stop()
