"""The sweep end to end: dealer CSV files in, outbox messages and call tasks out, exactly once."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import Connection, create_engine, event, func, select, text
from typer.testing import CliRunner

from crm.demo import generate, write_csv
from crm.migrate import upgrade
from crm.models import CallTask, Delivery, OutboxMessage, table
from worker.cli import app
from worker.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 23)
# Mid-morning in Shanghai: inside the default quiet-hours window, so nothing is deferred.
MORNING = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
D, OUT, T = table(Delivery), table(OutboxMessage), table(CallTask)


def counts(conn: Connection) -> dict[str, int]:
    return {
        name: conn.execute(select(func.count()).select_from(t)).scalar_one()
        for name, t in (("deliveries", D), ("outbox", OUT), ("calls", T))
    }


@pytest.fixture
def morning() -> Iterator[None]:
    with time_machine.travel(MORNING, tick=True):
        yield


def sweep(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sweep", "--date", DAY.isoformat()])
    assert result.exit_code == 0, result.output
    assert "Swept as of 2026-11-23" in result.output


def test_csv_exports_reach_the_outbox_and_the_call_list(
    runtime: Runtime, tmp_path: Path, morning: None
) -> None:
    write_csv(tmp_path / "exports", customers=150, seed=3, today=DAY)
    runner = CliRunner()
    imported = runner.invoke(app, ["import", str(tmp_path / "exports")])
    assert imported.exit_code == 0, imported.output

    sweep(runner)

    with runtime.engine.connect() as conn:
        sms = conn.execute(
            select(OUT.c.recipient, OUT.c.body, OUT.c.segments).where(OUT.c.channel == "sms")
        ).all()
        calls = conn.execute(select(T.c.phone, T.c.script, T.c.due_by, T.c.status)).all()
        by_status = select(D.c.status, func.count()).group_by(D.c.status)
        statuses = {str(status): int(n) for status, n in conn.execute(by_status)}
    assert sms and calls
    assert all(r.recipient.startswith("+86") and r.body and r.segments >= 1 for r in sms)
    assert all(c.script and c.status == "open" for c in calls)
    # Every row either went out or says why not; steps with `after:` wait in pending.
    assert set(statuses) <= {"sent", "suppressed", "pending"}
    listed = runner.invoke(
        app, ["calls", "--date", DAY.isoformat(), "--csv", str(tmp_path / "c.csv")]
    )
    assert listed.exit_code == 0, listed.output
    assert (tmp_path / "c.csv").read_bytes().startswith(b"\xef\xbb\xbfid,priority")


def test_a_second_sweep_of_the_same_day_creates_nothing(runtime: Runtime, morning: None) -> None:
    generate(runtime.settings.database_url, customers=300, seed=5, today=DAY)
    runner = CliRunner()
    sweep(runner)
    with runtime.engine.connect() as conn:
        first = counts(conn)
    assert first["deliveries"] > 0 and first["outbox"] > 0 and first["calls"] > 0

    sweep(runner)

    with runtime.engine.connect() as conn:
        assert counts(conn) == first


def sweep_in_processes(db_url: str, processes: int) -> None:
    """``processes`` `milepost sweep` commands for DAY on ``db_url``, all started at once."""
    env = {
        **os.environ,
        "MILEPOST_DATABASE_URL": db_url,
        "MILEPOST_CAMPAIGNS": str(ROOT / "campaigns"),
        "MILEPOST_SWEEP_BATCH": "50",  # many small transactions, so the two really interleave
        "MILEPOST_QUIET_HOURS": "00:00-00:00",  # open all day: the wall clock must not matter
    }
    command = [sys.executable, "-m", "worker.cli", "sweep", "--date", DAY.isoformat()]
    runs = [
        subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(processes)
    ]
    outputs = [run.communicate(timeout=240)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0] * processes, outputs


def ledger_keys(conn: Connection) -> set[tuple[str, int, int, str]]:
    query = select(D.c.campaign, D.c.step, D.c.subject_id, D.c.occurrence)
    return {(r.campaign, r.step, r.subject_id, r.occurrence) for r in conn.execute(query)}


def outcomes(url: str) -> tuple[dict[str, int], dict[tuple[str, int, int, str], str]]:
    """The counts of ledger rows, messages and calls, and each ledger key's status."""
    engine = create_engine(url)
    with engine.connect() as conn:
        query = select(D.c.campaign, D.c.step, D.c.subject_id, D.c.occurrence, D.c.status)
        statuses = {(r[0], r[1], r[2], r[3]): r[4] for r in conn.execute(query)}
        total = counts(conn)
    engine.dispose()
    return total, statuses


def test_two_sweeps_at_once_create_nothing_extra(tmp_path: Path, db_url: str) -> None:
    # The same dealer in a second database, swept once: what the two sweeps together must make.
    alone = f"sqlite:///{tmp_path / 'alone.db'}"
    upgrade(alone)
    for url in (db_url, alone):
        generate(url, customers=600, seed=11, today=DAY)
    sweep_in_processes(alone, 1)

    sweep_in_processes(db_url, 2)

    engine = create_engine(db_url)
    with engine.connect() as conn:
        keys = conn.execute(
            text(
                "SELECT count(*) - count(DISTINCT campaign || ':' || step || ':' || subject_id"
                " || ':' || occurrence) FROM deliveries"
            )
        ).scalar_one()
        per_delivery = conn.execute(
            text("SELECT count(*) FROM outbox GROUP BY delivery_id HAVING count(*) > 1")
        ).all()
    engine.dispose()
    assert keys == 0 and per_delivery == []
    once, twice = outcomes(alone), outcomes(db_url)
    assert once[0]["deliveries"] > 0 and once[0]["outbox"] > 0 and once[0]["calls"] > 0
    assert twice[0] == once[0]  # ledger rows, messages and call tasks: as many as one sweep
    assert twice[1] == once[1]  # the same rows, each with the same outcome


def test_a_sweep_of_more_than_1024_vehicles_writes_what_the_evaluator_matches_for_each(
    runtime: Runtime, morning: None
) -> None:
    from crm.records import load_records
    from rules.engine import Evaluator
    from rules.facts import derive
    from worker import run, sweep_runs

    # durable_rules fails past 1024 live sessions: one range of more vehicles than that.
    generate(runtime.settings.database_url, vehicles=1500, seed=17, today=DAY)
    as_of = run.as_of_for(DAY)

    run_id = run.sweep_inprocess(as_of, deliver=False)

    state = sweep_runs.get(runtime.engine, run_id)
    assert state is not None and state.ranges == 1 and state.finished_at is not None
    expected = set()
    local_day = as_of.astimezone(runtime.settings.tz).date()
    with runtime.engine.connect() as conn:
        records = load_records(conn, 1, 10_000)
        made = ledger_keys(conn)
        first = counts(conn)
    assert len(records) == 1500
    with Evaluator(list(runtime.campaigns.values())) as reference:
        for record in records:
            facts = derive(
                record,
                as_of,
                tz=runtime.settings.tz,
                holidays=runtime.holidays,
                km_per_day=runtime.settings.km_per_day,
            )
            for campaign in reference.matches(facts, customer_campaigns=record["is_primary"]):
                subject = record["vehicle_id" if campaign.subject == "vehicle" else "customer_id"]
                occurrence = campaign.occurrence(local_day)
                expected |= {(campaign.id, s.index, subject, occurrence) for s in campaign.steps}
        assert reference.disagreements == 0
    assert runtime.evaluator.disagreements == 0
    assert len(expected) > 1500  # most vehicles are due something
    assert made == expected and first["deliveries"] == len(expected)

    run.sweep_inprocess(as_of, deliver=False)

    with runtime.engine.connect() as conn:
        assert counts(conn) == first


def test_a_ledger_only_sweep_queues_no_deliveries(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.sweep import LEDGER_ONLY, evaluate_range

    generate(runtime.settings.database_url, customers=200, seed=5, today=DAY)
    as_of = MORNING.isoformat()
    monkeypatch.setenv(LEDGER_ONLY, "1")
    assert evaluate_range(runtime, 1, 100, as_of) == []
    monkeypatch.delenv(LEDGER_ONLY)
    with runtime.engine.connect() as conn:
        written = conn.execute(select(func.count()).select_from(D)).scalar_one()
    due = evaluate_range(runtime, 101, 10_000, as_of)
    assert written > 0 and due  # the same sweep, not stopped: the rows due now come back


def test_a_range_is_evaluated_with_the_collector_paused(runtime: Runtime) -> None:
    from worker.sweep import evaluate_range

    generate(runtime.settings.database_url, customers=200, seed=5, today=DAY)
    enabled: list[bool] = []

    def note(*args: object) -> None:
        enabled.append(gc.isenabled())

    event.listen(runtime.engine, "before_cursor_execute", note)
    try:
        assert evaluate_range(runtime, 1, 10_000, MORNING.isoformat())
        on_after = gc.isenabled()
        gc.disable()
        evaluate_range(runtime, 1, 10_000, MORNING.isoformat())
        off_after = not gc.isenabled()
    finally:
        event.remove(runtime.engine, "before_cursor_execute", note)
        gc.enable()
    assert enabled and not any(enabled)  # the range's statements all ran paused
    assert on_after and off_after  # and the collector is left as it was found


def test_overlapping_ranges_resume_the_collector_after_the_last_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker import collector

    full: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    monkeypatch.setattr(collector, "PAUSE_LIMIT_S", 0.0)  # every overlap has run over the limit
    gc.callbacks.append(note)
    try:
        with collector.paused():
            with collector.paused():
                assert not gc.isenabled()
            # The other range still runs: still paused, but past the limit it collected once.
            assert not gc.isenabled() and full == [1]
        assert gc.isenabled() and full == [1]
    finally:
        gc.callbacks.remove(note)
        gc.enable()


@pytest.mark.redis
def test_messages_are_queued_on_redis_a_pipeline_at_a_time(redis_url: str) -> None:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    from worker.enqueue import PAGE, enqueue_all

    broker = RedisBroker(url=redis_url)
    seen: list[int] = []

    @dramatiq.actor(broker=broker, queue_name="enqueue-test", max_retries=0)
    def note(i: int) -> None:
        seen.append(i)

    pipelines = 0
    make_pipeline = broker.client.pipeline

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal pipelines
        pipelines += 1
        return make_pipeline(*args, **kwargs)

    broker.client.pipeline = counting  # type: ignore[method-assign]
    count = 2 * PAGE + 1
    enqueue_all(broker, [note.message(i) for i in range(count)])
    assert pipelines == 3
    assert broker.client.hlen("dramatiq:enqueue-test.msgs") == count

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        broker.join("enqueue-test", timeout=30_000)
        worker.join()
    finally:
        worker.stop()
        broker.close()
    assert sorted(seen) == list(range(count))  # every message once
