"""Provider rate limits per channel, shared by every worker through Redis when there is one."""

from __future__ import annotations

import threading
from typing import Any

from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import StubBackend

from worker.settings import Settings

_lock = threading.Lock()
_limiters: dict[tuple[str, str], WindowRateLimiter] = {}


def _backend(settings: Settings) -> Any:
    url = settings.broker_url or ""
    if url.startswith(("redis://", "rediss://")):
        from dramatiq.rate_limits.backends import RedisBackend

        return RedisBackend(url=url)
    # In-process, every worker thread shares this process's counters.
    return StubBackend()


def limiter(settings: Settings, channel: str) -> WindowRateLimiter | None:
    """The limiter for ``channel`` (messages per second), or None when it has no limit."""
    rate = {"sms": settings.sms_rate_per_s, "email": settings.email_rate_per_s}.get(channel)
    if not rate:
        return None
    key = (settings.broker_url or "", channel)
    with _lock:
        if key not in _limiters:
            _limiters[key] = WindowRateLimiter(
                _backend(settings), f"milepost-{channel}", limit=max(1, int(rate)), window=1
            )
        return _limiters[key]


def take_slot(settings: Settings, channel: str) -> bool:
    """Take one send slot for ``channel`` now; False means wait and try again shortly."""
    found = limiter(settings, channel)
    if found is None:
        return True
    with found.acquire(raise_on_failure=False) as acquired:
        return bool(acquired)
