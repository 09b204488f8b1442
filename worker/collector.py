"""Pausing Python's cyclic garbage collector while the sweep evaluates ranges (see below)."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# The cyclic garbage collector is paused while ranges are evaluated. A range makes no cyclic
# garbage (everything it allocates is freed by reference counting), yet the records, facts and
# matches it holds for a batch set off a collection every few hundred of them and a full one
# every few batches, going over every object of the process: ~10 % of the sweep's CPU (1.15 s
# of a 100,000-vehicle bench/sweep.py, 0.07 s paused). gc.disable is the process's, so in a
# threaded worker the pause is counted: the first range in pauses, the last out resumes, and
# the collector is left as it was found (off stays off). Other threads (deliveries) allocate
# meanwhile, so their cycles wait; when ranges overlap back to back, one that ends with the
# collector paused for over PAUSE_LIMIT_S runs a full collection, which bounds that wait (the
# collector's own full collections came about once a second in a sweep).
PAUSE_LIMIT_S = 1.0
_pause_lock = threading.Lock()
_pausing = 0  # ranges under way in this process
_paused_at = 0.0  # when the collector was paused, or last run while ranges overlapped
_resume = False  # whether the collector was on when the first of them paused it


@contextmanager
def paused() -> Iterator[None]:
    """The collector off for the block (and every overlapping one in this process)."""
    global _pausing, _paused_at, _resume
    with _pause_lock:
        if _pausing == 0:
            _resume, _paused_at = gc.isenabled(), time.monotonic()
            gc.disable()
        _pausing += 1
    try:
        yield
    finally:
        collect = False
        with _pause_lock:
            _pausing -= 1
            if _pausing == 0:
                if _resume:
                    gc.enable()
            elif _resume and time.monotonic() - _paused_at > PAUSE_LIMIT_S:
                collect, _paused_at = True, time.monotonic()
        if collect:  # outside the lock: finalizers run during a collection
            gc.collect()


def _after_fork_in_child() -> None:
    # A child forked mid-range has no thread to end that range: start it unpaused.
    global _pause_lock, _pausing
    _pause_lock = threading.Lock()
    if _pausing:
        _pausing = 0
        if _resume:
            gc.enable()


os.register_at_fork(after_in_child=_after_fork_in_child)
