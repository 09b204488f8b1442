"""A sweep shared by the workers, followed from anywhere: its run, its ranges, `sweep --wait`."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import date, datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dramatiq import Message
from processes import MILEPOST, ROOT, Daemon, milepost_env
from rich.console import Console
from sqlalchemy import func, select
from typer.testing import CliRunner

from crm.demo import generate
from crm.models import Delivery, SweepRange, table
from worker import sweep_runs, sweep_watch
from worker.cli import app
from worker.runtime import Runtime, get_runtime, reset_runtime
from worker.sweep import evaluate_range, plan_run

D, RR = table(Delivery), table(SweepRange)
DAY = date(2026, 11, 23)
AS_OF = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
CAMPAIGNS = ROOT / "campaigns"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def rt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """This process's runtime on a fresh SQLite, then PostgreSQL, database."""
    url = request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url")
    monkeypatch.setenv("MILEPOST_DATABASE_URL", url)
    monkeypatch.setenv("MILEPOST_CAMPAIGNS", str(CAMPAIGNS))
    reset_runtime()
    yield get_runtime()
    reset_runtime()


def ledger_size(rt: Runtime) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(D)).scalar_one())


def test_a_retried_or_duplicated_evaluate_counts_its_range_once(rt: Runtime) -> None:
    generate(rt.settings.database_url, customers=120, seed=5, today=DAY)
    run = sweep_runs.create(rt.engine, AS_OF)
    ranges = plan_run(rt, run, batch=60)
    first, second, *rest = ranges
    as_of = AS_OF.isoformat()

    evaluate_range(rt, *first, as_of, run_id=run)
    rows = ledger_size(rt)
    again = evaluate_range(rt, *first, as_of, run_id=run)  # a redelivered message
    state = sweep_runs.get(rt.engine, run)

    assert again == [] and ledger_size(rt) == rows > 0
    assert state is not None and (state.ranges, state.done) == (len(ranges), 1)

    # Two workers on the same message at once (a redelivery racing the original).
    twins = [
        threading.Thread(target=evaluate_range, args=(rt, *second, as_of), kwargs={"run_id": run})
        for _ in range(2)
    ]
    for twin in twins:
        twin.start()
    for twin in twins:
        twin.join()
    state = sweep_runs.get(rt.engine, run)
    assert state is not None and state.done == 2 and state.finished_at is None

    for lo, hi in rest:
        evaluate_range(rt, lo, hi, as_of, run_id=run)
    state = sweep_runs.get(rt.engine, run)
    assert state is not None and state.done == len(ranges) and state.finished_at is not None
    with rt.engine.connect() as conn:
        markers = conn.execute(select(RR.c.lo, RR.c.hi).where(RR.c.run_id == run)).all()
    assert sorted(markers) == ranges


def test_a_sweep_of_no_vehicles_is_finished_once_planned(rt: Runtime) -> None:
    run = sweep_runs.create(rt.engine, AS_OF)

    assert plan_run(rt, run) == []
    state = sweep_runs.get(rt.engine, run)
    assert state is not None and state.ranges == 0 and state.finished_at is not None


def test_following_a_run_nobody_takes_says_to_start_a_worker(runtime: Runtime) -> None:
    run = sweep_runs.create(runtime.engine, AS_OF)
    screen = io.StringIO()
    limits = sweep_watch.Limits(poll_s=0.05, stall_s=0.2, give_up_s=0.6)

    with pytest.raises(sweep_watch.Stalled) as stalled:
        sweep_watch.follow(runtime.engine, run, Console(file=screen, width=200), limits)

    hint = f"No worker has taken sweep {run} yet; is `milepost worker` running?"
    assert hint in screen.getvalue()  # warned while still waiting
    assert str(stalled.value) == hint


def test_watching_a_run_that_does_not_exist_fails_in_one_sentence(runtime: Runtime) -> None:
    result = CliRunner().invoke(app, ["sweep", "--watch", "42"])

    assert result.exit_code == 1
    assert "There is no sweep 42" in result.output


def test_the_daily_sweep_is_recorded_as_a_run(runtime: Runtime) -> None:
    from worker import actors, scheduler

    actors.broker.flush_all()  # type: ignore[attr-defined]  # the in-process (stub) broker
    scheduler.daily_sweep()

    (data,) = list(actors.broker.queues["sweep"].queue)  # type: ignore[attr-defined]
    actors.broker.flush_all()  # type: ignore[attr-defined]
    queued = Message.decode(data)
    state = sweep_runs.get(runtime.engine, queued.kwargs["run_id"])
    assert state is not None and state.ranges is None  # a worker plans it


def plain(text: str) -> str:
    """``text`` without the terminal's colours and cursor moves."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def cluster_env(db: str, broker: str) -> dict[str, str]:
    return milepost_env(
        database_url=db,
        broker_url=broker,
        campaigns=CAMPAIGNS,
        metrics_port=0,
        sweep_batch=40,  # several ranges, so there is progress to see
        quiet_hours="00:00-00:00",  # open all day: the wall clock must not matter
    )


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_sweep_wait_shows_the_workers_progress_then_the_table(
    pg_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate(pg_url, customers=300, seed=5, today=DAY)
    env = cluster_env(pg_url, redis_url)
    worker = Daemon([MILEPOST, "worker", "--processes", "1", "--threads", "2"], env, tmp_path / "w")
    try:
        worker.wait_for(partial(worker.says, "ready for action"), 60, "the worker ready")
        # TTY_*: rich draws the bar as on a terminal, so the test can see it.
        terminal = env | {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "120"}
        done = subprocess.run(
            [MILEPOST, "sweep", "--date", DAY.isoformat(), "--wait"],
            env=terminal,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        worker.cleanup()

    out, bar = plain(done.stdout), plain(done.stderr)
    assert done.returncode == 0, out + bar + worker.output()
    assert re.search(r"Evaluating .* \d+/\d+ ranges", bar), bar
    assert "Swept as of 2026-11-23 08:00 CST (sweep 1," in out
    assert "first-service" in out and "campaigns." in out

    monkeypatch.setenv("MILEPOST_DATABASE_URL", pg_url)
    monkeypatch.setenv("MILEPOST_CAMPAIGNS", str(CAMPAIGNS))
    reset_runtime()
    rt = get_runtime()
    try:
        state = sweep_runs.get(rt.engine, 1)
        assert state is not None and state.ranges and state.done == state.ranges > 1
        rows = ledger_size(rt)
        # The ledger is complete: evaluating the whole fleet again here adds nothing.
        assert evaluate_range(rt, 0, 10**9, AS_OF.isoformat()) == []
        assert ledger_size(rt) == rows > 0
    finally:
        reset_runtime()


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_waiting_not_the_sweep(db_url: str, redis_url: str) -> None:
    import redis

    generate(db_url, customers=30, seed=5, today=DAY)
    waiting = subprocess.Popen(
        [MILEPOST, "sweep", "--date", DAY.isoformat(), "--wait"],
        env=cluster_env(db_url, redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT, and its children would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert waiting.stdout is not None
        assert "Sweep 1 queued" in waiting.stdout.readline()
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()

    assert waiting.returncode == 130, out + err
    assert "Stopped waiting; sweep 1 goes on in the workers" in err
    assert redis.Redis.from_url(redis_url).hlen("dramatiq:sweep.msgs") == 1  # still queued
