"""`milepost worker` on the real brokers: it delivers, reports, stops cleanly, and loses nothing.

A worker process killed mid-job must not strand its message: Redis gives it back once the
dead process's heartbeat is older than the broker's timeout, RabbitMQ when the connection drops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import require_service
from dramatiq import Message
from processes import MILEPOST, ROOT, Daemon, free_port, http_get, milepost_env
from sqlalchemy import select
from typer.testing import CliRunner

from crm.demo import generate
from crm.models import Delivery, table
from worker import broker as brokers
from worker.cli import app
from worker.daemons import broker_problem, worker_command
from worker.enqueue import enqueue_all
from worker.metrics import MILEPOST_NAMES, Metrics
from worker.runtime import Runtime, reset_runtime
from worker.settings import Settings
from worker.sweep import evaluate_range

D = table(Delivery)
RABBITMQ_URL = os.environ.get("MILEPOST_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
MATCHED = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture(params=["redis", "amqp"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each real broker in turn: Redis (its own database, emptied) and RabbitMQ."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    problem = broker_problem(RABBITMQ_URL)
    if problem:
        require_service("RabbitMQ", problem)
    return RABBITMQ_URL


def job(queue: str, actor: str, *args: object) -> Message[object]:
    return Message(queue_name=queue, actor_name=actor, args=args, kwargs={}, options={})


def test_the_worker_command_takes_processes_threads_and_prefetch_from_settings() -> None:
    settings = Settings(worker_processes=3, worker_threads=4, metrics_port=0)

    argv, env = worker_command(settings)
    flagged, _ = worker_command(settings, processes=1, threads=16)

    assert argv[argv.index("--processes") + 1] == "3" and argv[argv.index("--threads") + 1] == "4"
    assert env == {"dramatiq_queue_prefetch": "32"}  # 8 per thread: short jobs never wait
    assert flagged[flagged.index("--processes") + 1] == "1"
    assert worker_command(Settings(worker_prefetch=100, metrics_port=0))[1] == {
        "dramatiq_queue_prefetch": "100"
    }
    assert argv[argv.index("--worker-fork-timeout") + 1] == "10000"


@pytest.mark.timeout(60)
def test_a_worker_process_killed_at_boot_stops_the_worker_within_seconds(tmp_path: Path) -> None:
    # Nothing to consume: the module kills its own process before any broker is made.
    settings = Settings(metrics_port=0)
    argv, extra = worker_command(settings, processes=1, threads=1, module="dies_at_boot")
    env = milepost_env(metrics_port=0) | extra | {"PYTHONPATH": str(ROOT / "tests")}
    worker = Daemon(argv, env, tmp_path / "w")
    try:
        started = time.monotonic()
        code = worker.proc.wait(timeout=50)
        took = time.monotonic() - started

        # Not its output: Dramatiq's main process can exit before writing out its last log line.
        assert code != 0, worker.output()
        assert took < 20, f"took {took:.1f} s (Dramatiq's default wait: 30 s)\n{worker.output()}"
    finally:
        worker.cleanup()


def test_the_redis_broker_gives_a_dead_workers_messages_back_fast() -> None:
    broker = brokers.make_broker(Settings(broker_url="redis://127.0.0.1:1/0"))

    assert broker.heartbeat_timeout == 10_000  # type: ignore[attr-defined]
    assert broker.maintenance_chance == 200_000  # type: ignore[attr-defined]
    ages = [m.max_age for m in broker.middleware if isinstance(m, brokers.AgeLimit)]
    assert ages == [brokers.MAX_AGE_MS]
    assert any(isinstance(m, Metrics) for m in broker.middleware)
    quiet = brokers.make_broker(Settings(broker_url="redis://127.0.0.1:1/0", metrics_port=0))
    assert not any(isinstance(m, Metrics) for m in quiet.middleware)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://:s3cret@127.0.0.1:1/0", "the broker at 127.0.0.1 does not answer"),
        ("amqp://guest:s3cret@127.0.0.1:1/", "the broker at 127.0.0.1 does not answer"),
        (None, "MILEPOST_BROKER_URL is not set"),
    ],
)
def test_the_worker_health_check_fails_when_the_broker_does_not_answer(
    db_url: str, monkeypatch: pytest.MonkeyPatch, url: str | None, problem: str
) -> None:
    if url:
        monkeypatch.setenv("MILEPOST_BROKER_URL", url)
    else:
        monkeypatch.delenv("MILEPOST_BROKER_URL", raising=False)
    reset_runtime()

    result = CliRunner().invoke(app, ["health", "--worker"])

    assert result.exit_code == 1
    assert problem in result.output and "s3cret" not in result.output
    reset_runtime()


def due_rows(rt: Runtime) -> list[int]:
    generate(rt.settings.database_url, customers=30, seed=5, today=date(2026, 11, 23))
    return evaluate_range(rt, 0, 10**9, MATCHED.isoformat(), now=MATCHED)


@pytest.mark.timeout(90)
def test_the_worker_delivers_reports_metrics_and_stops_on_sigterm(
    broker_url: str, runtime: Runtime, tmp_path: Path
) -> None:
    ids = due_rows(runtime)
    port = free_port()
    env = milepost_env(
        database_url=runtime.settings.database_url, broker_url=broker_url, metrics_port=port
    )
    worker = Daemon([MILEPOST, "worker", "--processes", "1", "--threads", "2"], env, tmp_path / "w")
    producer = brokers.make_broker(Settings(broker_url=broker_url, metrics_port=0))
    try:
        # The health check (compose's) needs only the database and broker: ask it meanwhile.
        health = subprocess.Popen(
            [MILEPOST, "health", "--worker"], env=env, stdout=subprocess.PIPE, text=True
        )
        metrics = f"http://127.0.0.1:{port}/metrics"
        worker.wait_for(lambda: http_get(metrics), 30, "metrics endpoint")  # up once it answers
        assert health.wait(timeout=30) == 0

        enqueue_all(producer, [job("deliver", "deliver", i) for i in ids])

        def handled() -> bool:
            with runtime.engine.connect() as conn:
                statuses = conn.execute(select(D.c.status).where(D.c.id.in_(ids))).scalars()
                return "pending" not in set(statuses)

        worker.wait_for(handled, 30, "every queued row handled")
        text = worker.wait_for(lambda: http_get(metrics), 5, "metrics")
        for name in ("dramatiq_messages_total", *MILEPOST_NAMES):
            assert f"\n{name}" in text, name
        assert 'actor_name="deliver"' in text

        code, took = worker.stop()
        assert code == 0, worker.output()
        assert took < 10, f"an idle worker took {took:.1f} s to stop"
    finally:
        producer.close()
        worker.cleanup()


def pids(runs: Path) -> list[str]:
    """The processes that ran the crash actor's job, in order."""
    return runs.read_text().split() if runs.exists() else []


class CrashActors:
    """`dramatiq crash_actor` workers on a queue of their own; jobs queued; all cleaned up."""

    def __init__(self, broker_url: str, tmp_path: Path) -> None:
        self.queue, self.tmp_path = f"crash-{uuid.uuid4().hex[:8]}", tmp_path
        self.amqp = broker_url.startswith("amqp")
        settings = Settings(broker_url=broker_url, metrics_port=0)
        self.argv, extra = worker_command(settings, processes=1, threads=1, module="crash_actor")
        self.env = milepost_env(broker_url=broker_url, metrics_port=0) | extra
        self.env |= {"CRASH_QUEUE": self.queue, "PYTHONPATH": str(ROOT / "tests")}
        self.producer = brokers.make_broker(settings)
        self.workers: list[Daemon] = []

    def queue_job(self, actor: str, runs: Path) -> None:
        enqueue_all(self.producer, [job(self.queue, actor, str(runs))])

    def start(self, name: str) -> Daemon:
        worker = Daemon(self.argv, self.env, self.tmp_path / name)
        self.workers.append(worker)
        return worker

    def cleanup(self) -> None:
        if self.amqp:
            for name in (self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"):
                self.producer.channel.queue_delete(name)  # type: ignore[attr-defined]
        self.producer.close()
        for worker in self.workers:
            worker.cleanup()


@pytest.fixture
def crash_actors(broker_url: str, tmp_path: Path) -> Iterator[CrashActors]:
    crew = CrashActors(broker_url, tmp_path)
    try:
        yield crew
    finally:
        crew.cleanup()


@pytest.mark.timeout(120)
def test_a_killed_workers_message_is_processed_again_within_a_minute(
    crash_actors: CrashActors,
    broker_url: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    runs = tmp_path / "runs"
    crash_actors.queue_job("nap", runs)
    workers = [crash_actors.start(name) for name in ("one", "two")]
    for worker in workers:  # both take work; whichever took the job will be killed
        worker.wait_for(partial(worker.says, "ready for action"), 30, "ready")
    victim = workers[0].wait_for(lambda: pids(runs), 30, "the job started")[0]

    os.kill(int(victim), signal.SIGKILL)
    killed = time.monotonic()
    survivor = next(w for w in workers if not w.says(f"[PID {victim}]"))
    again = survivor.wait_for(lambda: pids(runs)[1:], 60, "the job again")[0]
    took = time.monotonic() - killed

    record_property("requeued_after_s", round(took, 1))
    print(f"{broker_url.split(':')[0]}: the killed worker's job came back in {took:.1f} s")
    assert again != victim
    assert took < 60
    assert survivor.stop()[0] == 0, survivor.output()


@pytest.mark.timeout(90)
def test_sigterm_lets_the_job_in_hand_finish_and_it_never_runs_again(
    crash_actors: CrashActors, tmp_path: Path
) -> None:
    # A deploy or `docker compose stop` sends SIGTERM: a delivery half-way must complete (and be
    # acknowledged), not be cut off and left `sending`, nor run a second time.
    runs = tmp_path / "runs"
    crash_actors.queue_job("finish", runs)
    first = crash_actors.start("first")
    first.wait_for(lambda: runs.exists() and "start" in runs.read_text(), 30, "the job")

    code, _ = first.stop(timeout=30)

    assert code == 0, first.output()
    assert [line.split()[0] for line in runs.read_text().splitlines()] == ["start", "done"]
    second = crash_actors.start("second")
    second.wait_for(partial(second.says, "ready for action"), 30, "ready")
    time.sleep(3)  # long enough for a job given back to start again
    assert runs.read_text().count("start") == 1
    assert second.stop()[0] == 0, second.output()
