"""Run queued work to completion inside this process: the embedded default and the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker


class FailFast(dramatiq.Middleware):
    """In-process, an actor that raises is a bug to report now, not a job to retry in minutes."""

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int) -> None:
        message.options["max_retries"] = 0


@contextmanager
def running(
    broker: dramatiq.Broker, threads: int = 4, queues: set[str] | None = None
) -> Iterator[Callable[[], None]]:
    """A real Dramatiq worker on the in-process broker (``queues``: all); yields ``drain``.

    ``drain()`` returns once every ready message, including those the work itself queued, is
    processed, and re-raises the first actor that raised. Rows waiting for a retry or a
    quiet-hours window stay in the ledger; `release_due` queues them again when they are due.
    """
    if not isinstance(broker, StubBroker):
        raise TypeError(
            "the in-process worker runs on the StubBroker only; start `milepost worker`"
        )
    before = list(broker.middleware)
    worker = dramatiq.Worker(broker, queues=queues, worker_threads=threads, worker_timeout=50)
    worker.start()

    def drain() -> None:
        while True:
            names = [name for name in broker.queues if not name.endswith(".DQ")]
            for name in [name for name in names if queues is None or name in queues]:
                broker.join(name, fail_fast=True)
            worker.join()
            consumed = [q for name, q in broker.queues.items() if not queues or name in queues]
            if all(queue.unfinished_tasks == 0 for queue in consumed):
                return

    try:
        yield drain
    finally:
        worker.stop()
        broker.middleware[:] = before  # drop this worker's own middleware with it
        for letters in broker.dead_letters_by_queue.values():
            letters.clear()  # in place: the consumers hold these lists
