"""An actor on Milepost's broker that naps on its first run: the job a test kills mid-way.

Run by `python -m dramatiq crash_actor` (tests on the PYTHONPATH), with MILEPOST_BROKER_URL
and CRASH_QUEUE set; each run appends "<pid>" to the file it is given.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dramatiq

from worker.broker import make_broker
from worker.settings import get_settings

broker = make_broker(get_settings())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=os.environ.get("CRASH_QUEUE", "crash"), max_retries=0)
def nap(runs: str) -> None:
    """Record this run; the first one then sleeps until it is killed."""
    path = Path(runs)
    first = not path.exists()
    with path.open("a") as out:
        out.write(f"{os.getpid()}\n")
    if first:
        time.sleep(600)


@dramatiq.actor(queue_name=os.environ.get("CRASH_QUEUE", "crash"), max_retries=0)
def finish(runs: str) -> None:
    """Record "start <pid>", work for two seconds, then record "done <pid>"."""
    path = Path(runs)
    with path.open("a") as out:
        out.write(f"start {os.getpid()}\n")
    time.sleep(2)
    with path.open("a") as out:
        out.write(f"done {os.getpid()}\n")
