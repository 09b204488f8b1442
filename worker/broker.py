"""The Dramatiq broker: Redis or RabbitMQ from MILEPOST_BROKER_URL, else in-process."""

from __future__ import annotations

import gc
import logging

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from worker.settings import Settings

DAY_MS = 24 * 3600 * 1000
# A message older than this is dropped unsent: the next sweep or tick makes a fresh one, and
# yesterday's reminder must not arrive in a burst after an outage.
MAX_AGE_MS = DAY_MS
TIME_LIMIT_MS = 10 * 60 * 1000  # far beyond any provider timeout; a hung job is interrupted

# Redis: a worker process that stops heartbeating for this long (ms) is dead and its unacked
# messages go back to their queue. Every live process heartbeats at least once a second (its
# consumers poll the delay queues), so 10 s only ever catches the dead. Dramatiq's 60 s
# default plus rare maintenance left messages stranded for ~20 minutes.
HEARTBEAT_TIMEOUT_MS = 10_000
# Out of 1,000,000 broker operations (Dramatiq's scale, not "one in N"): one in five checks
# for dead workers on its queue. Idle consumers poll about once a second, so a dead worker's
# messages come back a few seconds after its heartbeat expires; the check is two ZRANGEBYSCOREs.
MAINTENANCE_CHANCE = 200_000


class WarmUp(Middleware):
    """Each worker process builds its runtime at boot, before it takes a message."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from worker.runtime import get_runtime

        try:
            get_runtime().warm()
        except Exception:  # the first message reports it (e.g. invalid campaigns) and retries
            logging.getLogger("milepost.worker").exception("warming up failed")
        # Everything loaded so far (modules, campaigns, templates, the SDK) lives as long as
        # the process: out of the collector's sight, full collections stop walking it.
        gc.freeze()


def middleware(settings: Settings, *, metrics: bool) -> list[Middleware]:
    """Dramatiq's default stack with Milepost's limits, and Prometheus for real brokers."""
    stack: list[Middleware] = [
        AgeLimit(max_age=MAX_AGE_MS),
        TimeLimit(time_limit=TIME_LIMIT_MS),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(),
    ]
    if metrics:  # a real broker: a long-running worker daemon
        stack.append(WarmUp())
    if metrics and settings.metrics_port:
        from worker.metrics import Metrics

        stack.append(Metrics())
    return stack


def make_broker(settings: Settings) -> dramatiq.Broker:
    """A broker for ``settings.broker_url``; the in-process StubBroker when it is unset."""
    url = settings.broker_url
    broker: dramatiq.Broker
    if not url:
        from worker.inprocess import FailFast

        broker = StubBroker(middleware=middleware(settings, metrics=False))
        broker.add_middleware(FailFast())
        broker.emit_after("process_boot")
    elif url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(
            url=url,
            middleware=middleware(settings, metrics=True),
            heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
            maintenance_chance=MAINTENANCE_CHANCE,
        )
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        # RabbitMQ requeues a killed worker's unacked messages as soon as its connection
        # drops; confirmations make `send()` return only once RabbitMQ holds the message.
        broker = RabbitmqBroker(
            url=url, middleware=middleware(settings, metrics=True), confirm_delivery=True
        )
    else:
        raise ValueError(f"MILEPOST_BROKER_URL {url!r}: use redis://…, amqp://… or leave it unset")
    return broker


def is_inprocess(broker: dramatiq.Broker) -> bool:
    return isinstance(broker, StubBroker)
