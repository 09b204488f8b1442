"""Provider rate limits per channel, shared by every worker through Redis when there is one.

The Redis is MILEPOST_REDIS_URL, else the broker's when that is Redis. With RabbitMQ and no
Redis, each process keeps its own window, and says so once.

A sliding one-second window: this second's count plus the share of the last second's count
that still overlaps the window (as if it had been spread evenly); a slot is free while that
stays at least one below the limit. Why not Dramatiq's WindowRateLimiter: on Redis it takes four
round trips under WATCH, and with 16 threads asking at once most of them lose the race and go
round again. Here one script call decides atomically, and a process takes slots in small
batches (a fiftieth of the limit), so at a high rate most sends cost no round trip at all; a
process never holds more than its batch of the current second, so the limit still holds.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Protocol

from worker.settings import Settings

log = logging.getLogger("milepost.throttle")

# KEYS: this second's counter, the last second's. ARGV: limit, overlap (0..1), slots wanted.
_SCRIPT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local before = tonumber(redis.call('GET', KEYS[2]) or '0')
local free = math.floor(tonumber(ARGV[1]) - count - before * tonumber(ARGV[2]))
local granted = math.min(free, tonumber(ARGV[3]))
if granted < 1 then
    return 0
end
redis.call('INCRBY', KEYS[1], granted)
redis.call('PEXPIRE', KEYS[1], 2000)
return granted
"""


class Window(Protocol):
    def take(self, now: float) -> bool: ...


class LocalWindow:
    """The window in this process: every worker thread here shares its counts."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[int, int] = {}
        self.lock = threading.Lock()

    def take(self, now: float) -> bool:
        second, overlap = int(now), 1 - (now % 1)
        with self.lock:
            count = self.counts.get(second, 0)
            if self.limit - count - self.counts.get(second - 1, 0) * overlap < 1:
                return False
            self.counts = {second - 1: self.counts.get(second - 1, 0), second: count + 1}
            return True


class RedisWindow:
    """The window in Redis: every worker process on every machine shares its counts."""

    def __init__(self, url: str, name: str, limit: int) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.script: Any = self.client.register_script(_SCRIPT)
        self.name, self.limit = name, limit
        self.batch = max(1, limit // 50)
        self.held = (0, 0)  # (second, slots this process took in it and has not used)
        self.lock = threading.Lock()

    def take(self, now: float) -> bool:
        second, overlap = int(now), 1 - (now % 1)
        with self.lock:
            held_second, held = self.held
            if held_second == second and held > 0:
                self.held = (second, held - 1)
                return True
            # The braces put both keys in one hash slot, as a script on Redis Cluster needs.
            keys = [f"{{{self.name}}}:{second}", f"{{{self.name}}}:{second - 1}"]
            granted = int(self.script(keys=keys, args=[self.limit, overlap, self.batch]))
            self.held = (second, max(granted - 1, 0))
            return granted > 0


_lock = threading.Lock()
_windows: dict[tuple[str, str, int], Window] = {}
_warned = False  # this process said its limits are its own
_warned_lock = threading.Lock()  # not _lock: window() calls this holding it


def warn_if_per_process(settings: Settings) -> None:
    """Say once per process when worker processes each keep their own rate limit."""
    # In-process (no broker) there is one process, so its own limit is the limit.
    limited = settings.sms_rate_per_s or settings.email_rate_per_s
    if settings.redis_url or not settings.broker_url or not limited:
        return
    global _warned
    with _warned_lock:
        if _warned:
            return
        _warned = True
    log.warning(
        "MILEPOST_BROKER_URL is not a Redis URL and MILEPOST_REDIS_URL is not set: provider "
        "rate limits (MILEPOST_SMS_RATE_PER_S, MILEPOST_EMAIL_RATE_PER_S) hold per worker "
        "process, so N processes may send N times as fast. Set MILEPOST_REDIS_URL to share them."
    )


def window(settings: Settings, channel: str) -> Window | None:
    """The limiter for ``channel`` (messages per second), or None when it has no limit."""
    rate = {"sms": settings.sms_rate_per_s, "email": settings.email_rate_per_s}.get(channel)
    if not rate:
        return None
    url, limit = settings.redis_url or "", max(1, int(rate))
    key = (url, channel, limit)
    with _lock:
        if key not in _windows:
            if url:
                _windows[key] = RedisWindow(url, f"milepost-rate-{channel}", limit)
            else:
                warn_if_per_process(settings)
                _windows[key] = LocalWindow(limit)
        return _windows[key]


def take_slot(settings: Settings, channel: str, now: float | None = None) -> bool:
    """Take one send slot for ``channel`` now; False means wait and try again shortly."""
    found = window(settings, channel)
    return found is None or found.take(time.time() if now is None else now)


def wait_s(times_throttled: int, first_s: float = 1.0, longest_s: float = 60.0) -> float:
    """How long a throttled message waits before asking again: doubling, capped, jittered.

    A backlog far over the rate would otherwise come back every second, all at once, and
    spend its reads and Redis calls only to be throttled again.
    """
    return min(first_s * 2**times_throttled, longest_s) * random.uniform(0.5, 1.5)
