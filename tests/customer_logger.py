"""An actor that logs a customer's full phone number and address: what masking must catch.

Run by `python -m dramatiq worker.actors customer_logger` (tests on the PYTHONPATH), so the
worker process boots as `milepost worker`'s do; LOG_QUEUE names its queue.
"""

from __future__ import annotations

import logging
import os

import dramatiq

log = logging.getLogger("milepost.worker.test")


@dramatiq.actor(queue_name=os.environ.get("LOG_QUEUE", "customer-logger"), max_retries=0)
def log_customer(phone: str, email: str) -> None:
    """Log both, and fail with both in the error: the message and the traceback are masked."""
    log.warning("texting %s, mailing %s", phone, email)
    raise RuntimeError(f"provider refused {phone} / {email}")
