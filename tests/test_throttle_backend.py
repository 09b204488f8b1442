"""Where provider rate limits live: one budget in Redis for every worker, or one per process.

With a Redis broker, or RabbitMQ and MILEPOST_REDIS_URL, all worker processes share one window
in Redis; with RabbitMQ alone each process keeps its own and warns once that it does. Run
against the real local Redis.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import redis

from worker import throttle
from worker.settings import Settings, SettingsError, get_settings
from worker.throttle import LocalWindow, RedisWindow, take_slot, window

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
NOW = 300.25  # a fixed instant: every taker asks within the same second


@pytest.fixture(autouse=True)
def new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a process that has built no window and warned of nothing yet."""
    monkeypatch.setattr(throttle, "_windows", {})
    monkeypatch.setattr(throttle, "_warned", [])


def settings(broker_url: str | None, redis_url: str | None = None) -> Settings:
    return Settings(broker_url=broker_url, redis_url=redis_url, sms_rate_per_s=5)


def rate_keys(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    return sorted(str(key) for key in client.keys("{milepost-rate-sms}:*"))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "milepost.throttle"]


def test_a_redis_broker_shares_the_limit_through_its_redis(redis_url: str) -> None:
    chosen = settings(redis_url)

    assert chosen.redis_url == redis_url
    assert isinstance(window(chosen, "sms"), RedisWindow)
    assert take_slot(chosen, "sms", NOW)
    assert rate_keys(redis_url) == ["{milepost-rate-sms}:300"]


def test_a_rabbitmq_broker_shares_the_limit_through_milepost_redis_url(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = settings(AMQP, redis_url)

    assert isinstance(window(chosen, "sms"), RedisWindow)
    assert take_slot(chosen, "sms", NOW)
    assert rate_keys(redis_url) == ["{milepost-rate-sms}:300"]
    assert warnings(caplog) == []


def test_milepost_redis_url_is_read_from_the_environment_and_checked(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILEPOST_BROKER_URL", AMQP)
    monkeypatch.setenv("MILEPOST_REDIS_URL", redis_url)
    get_settings.cache_clear()
    assert get_settings().redis_url == redis_url

    monkeypatch.setenv("MILEPOST_REDIS_URL", "")  # compose sets unset variables empty
    get_settings.cache_clear()
    assert get_settings().redis_url is None

    monkeypatch.setenv("MILEPOST_REDIS_URL", "127.0.0.1:6379")
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match="MILEPOST_REDIS_URL"):
        get_settings()
    get_settings.cache_clear()


def test_rabbitmq_alone_limits_each_process_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chosen = settings(AMQP)

    found = [window(chosen, channel) for channel in ("sms", "email", "sms")]

    assert all(isinstance(w, LocalWindow) for w in found)
    (said,) = warnings(caplog)
    assert "per worker process" in said and "Set MILEPOST_REDIS_URL" in said


def test_the_in_process_worker_limits_itself_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert isinstance(window(settings(None), "sms"), LocalWindow)
    assert warnings(caplog) == []


def test_threads_of_two_processes_share_one_redis_budget(redis_url: str) -> None:
    first, second = (RedisWindow(redis_url, "test-threads", limit=100) for _ in range(2))

    with ThreadPoolExecutor(16) as pool:  # 8 threads on each process's window
        granted = sum(pool.map(lambda n: (first, second)[n % 2].take(NOW), range(400)))

    assert granted == 100


def take_many(url: str, name: str, limit: int, times: int) -> int:
    """In a process of its own: how many of ``times`` slots its window got at NOW."""
    own = RedisWindow(url, name, limit)
    return sum(own.take(NOW) for _ in range(times))


def test_worker_processes_share_one_redis_budget(redis_url: str) -> None:
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, as worker processes are
    with ProcessPoolExecutor(3, mp_context=spawn) as pool:
        jobs = [pool.submit(take_many, redis_url, "test-processes", 100, 150) for _ in range(3)]
        granted = [job.result(timeout=30) for job in jobs]

    assert sum(granted) == 100, granted


def test_no_warning_when_no_channel_has_a_rate_limit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "milepost.throttle")
    off = Settings(broker_url=AMQP, redis_url=None, sms_rate_per_s=0, email_rate_per_s=0)

    throttle.warn_if_per_process(off)

    assert warnings(caplog) == []
