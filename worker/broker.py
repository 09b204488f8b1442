"""The Dramatiq broker: Redis or RabbitMQ from MILEPOST_BROKER_URL, else in-process."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker

from worker.settings import Settings

# A killed worker's unacked messages return once its heartbeat is this old (ms); the
# default of 60 s plus rare maintenance left messages stranded for ~20 minutes.
HEARTBEAT_TIMEOUT_MS = 15_000
MAINTENANCE_CHANCE = 50  # one in N broker operations runs the requeue of dead workers' messages


def make_broker(settings: Settings) -> dramatiq.Broker:
    """A broker for ``settings.broker_url``; the in-process StubBroker when it is unset."""
    url = settings.broker_url
    broker: dramatiq.Broker
    if not url:
        from worker.inprocess import FailFast

        broker = StubBroker()
        broker.add_middleware(FailFast())
        broker.emit_after("process_boot")
    elif url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(
            url=url,
            heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
            maintenance_chance=MAINTENANCE_CHANCE,
        )
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url)
    else:
        raise ValueError(f"MILEPOST_BROKER_URL {url!r}: use redis://…, amqp://… or leave it unset")
    return broker


def is_inprocess(broker: dramatiq.Broker) -> bool:
    return isinstance(broker, StubBroker)
