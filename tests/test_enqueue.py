"""Many messages are queued a page at a time on RabbitMQ, each delivered once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import dramatiq
import pytest
from conftest import require_service
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from test_scheduler import RABBITMQ_URL

from worker.broker import make_broker
from worker.daemons import broker_problem
from worker.enqueue import PAGE, enqueue_all
from worker.settings import Settings


@pytest.fixture
def rabbitmq() -> Iterator[tuple[RabbitmqBroker, str]]:
    if problem := broker_problem(RABBITMQ_URL):
        require_service("RabbitMQ", problem)
    broker = make_broker(Settings(broker_url=RABBITMQ_URL, metrics_port=0))
    assert isinstance(broker, RabbitmqBroker)
    queue = f"enqueue-{uuid.uuid4().hex[:8]}"  # of its own: other runs' workers never take it
    yield broker, queue
    for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
        broker.channel.queue_delete(name)
    broker.close()


def test_messages_are_queued_on_rabbitmq_a_transaction_a_page_and_each_runs_once(
    rabbitmq: tuple[RabbitmqBroker, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, queue = rabbitmq
    seen: list[int] = []

    @dramatiq.actor(broker=broker, queue_name=queue, max_retries=0)
    def note(i: int) -> None:
        seen.append(i)

    publishes = []  # one confirmed publish each is what this replaces
    monkeypatch.setattr(broker, "enqueue", lambda *a, **k: publishes.append(a))
    count = 2 * PAGE + 1
    enqueue_all(broker, [note.message(i) for i in range(count)])
    assert publishes == []
    assert broker.get_queue_message_counts(queue)[0] == count

    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        broker.join(queue, timeout=30_000)
        worker.join()
    finally:
        worker.stop()
    assert sorted(seen) == list(range(count))  # every message once, none lost
