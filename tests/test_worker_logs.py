"""`dramatiq worker.actors` processes mask phone numbers and addresses in what they log.

The dramatiq command, not Milepost, sets up a worker process's logging; Milepost's broker
module adds the masking filter to it when the process boots.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from conftest import CAMPAIGNS
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from processes import ROOT, Daemon, milepost_env

from channels.privacy import MaskingFilter
from worker import broker as brokers
from worker import throttle
from worker.daemons import worker_command
from worker.enqueue import enqueue_all
from worker.logmask import WorkerLogs
from worker.settings import Settings, get_settings

PHONE, EMAIL = "+8613812341234", "wang.wei@example.cn"


@pytest.mark.timeout(60)
def test_a_worker_process_logs_a_customers_number_and_address_masked(
    redis_url: str, db_url: str, tmp_path: Path
) -> None:
    queue = f"log-{uuid.uuid4().hex[:8]}"
    settings = Settings(broker_url=redis_url, metrics_port=0)
    argv, extra = worker_command(settings, processes=1, threads=1)
    argv.insert(argv.index("worker.actors") + 1, "customer_logger")
    argv += ["--queues", queue]  # not the `deliver` and `sweep` jobs of other tests on this Redis
    env = milepost_env(
        broker_url=redis_url, database_url=db_url, campaigns=str(CAMPAIGNS), metrics_port=0
    )
    env |= extra | {"LOG_QUEUE": queue, "PYTHONPATH": str(ROOT / "tests")}
    producer = brokers.make_broker(settings)
    worker = Daemon(argv, env, tmp_path / "worker")
    try:
        message: Message[object] = Message(
            queue_name=queue, actor_name="log_customer", args=(PHONE, EMAIL), kwargs={}, options={}
        )
        worker.wait_for(lambda: worker.says("ready for action"), 30, "the worker ready")
        enqueue_all(producer, [message])
        worker.wait_for(lambda: worker.says("provider refused"), 30, "the job's failure logged")
        assert worker.stop()[0] == 0, worker.output()
    finally:
        producer.close()
        worker.cleanup()

    logged = worker.output()
    assert "texting +86138****1234, mailing w***@example.cn" in logged
    assert "provider refused +86138****1234 / w***@example.cn" in logged  # the traceback too
    assert PHONE not in logged and PHONE.removeprefix("+86") not in logged
    assert EMAIL not in logged


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root_handler(monkeypatch: pytest.MonkeyPatch) -> Collect:
    """The root logger's only handler, as the dramatiq command leaves it in a worker process.

    Not pytest's: a filter added to its handlers would outlive the test.
    """
    handler = Collect()
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    return handler


def boot(monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    """What the dramatiq command has the broker do in a new worker process, on ``settings``."""
    for name in ("broker_url", "redis_url"):
        monkeypatch.delenv(f"MILEPOST_{name.upper()}", raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(f"MILEPOST_{name.upper()}", value)
    get_settings.cache_clear()
    try:
        WorkerLogs().after_process_boot(StubBroker())
    finally:
        get_settings.cache_clear()


def test_booting_masks_each_root_handler_once(
    monkeypatch: pytest.MonkeyPatch, root_handler: Collect
) -> None:
    boot(monkeypatch)
    boot(monkeypatch)  # a second boot hook (another broker module): still one filter

    assert [type(f) for f in root_handler.filters] == [MaskingFilter]
    logging.getLogger("milepost.worker.test").warning("texting %s", PHONE)
    assert root_handler.records[-1].getMessage() == "texting +86138****1234"


def test_a_worker_on_rabbitmq_alone_warns_at_boot_that_its_rate_limit_is_its_own(
    monkeypatch: pytest.MonkeyPatch, root_handler: Collect
) -> None:
    monkeypatch.setattr(throttle, "_warned", [])

    boot(monkeypatch, broker_url="amqp://guest:guest@127.0.0.1:5672/")

    (said,) = [r.getMessage() for r in root_handler.records if r.name == "milepost.throttle"]
    assert "per worker process" in said
