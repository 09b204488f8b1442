"""Logging in `dramatiq` worker processes, which the dramatiq command sets up, not Milepost."""

from __future__ import annotations

import dramatiq

from channels.privacy import mask_handlers
from worker import throttle
from worker.settings import get_settings


class WorkerLogs(dramatiq.Middleware):
    """Mask phone numbers and addresses in what a worker process logs; warn at its start-up.

    The dramatiq command gives each worker process a root handler writing to its log pipe,
    then imports the broker module and emits ``process_boot``: the first moment that handler
    exists, and before any job runs. The in-process broker emits it before this is added, so
    a host process (the CLI, the tests) keeps the logging it set up itself.
    """

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        mask_handlers()
        throttle.warn_if_per_process(get_settings())
