"""The `milepost` commands a newcomer meets first: demo, facts, db upgrade and calls."""

from __future__ import annotations

import csv
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import Engine, create_engine, func, inspect, select, text
from typer.testing import CliRunner

from crm.demo import generate
from crm.migrate import upgrade
from crm.models import CallTask, Customer, Vehicle, table
from rules.catalog import CATALOG
from worker.cli import app
from worker.runtime import Runtime, reset_runtime

ROOT = Path(__file__).resolve().parents[1]
MILEPOST = ROOT / ".venv" / "bin" / "milepost"
DAY = date(2026, 11, 23)
# Mid-morning in Shanghai: inside the default sending window, so nothing is deferred.
MORNING = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
C, V, T = table(Customer), table(Vehicle), table(CallTask)


def milepost(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command in a process of its own, on a terminal wide enough for any table."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
    environment = base | {"COLUMNS": "250", "MILEPOST_CAMPAIGNS": str(ROOT / "campaigns")} | env
    return subprocess.run(
        [str(MILEPOST), *args],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_rows(output: str) -> list[list[str]]:
    """The cells of each body row of the rich tables in ``output``."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def identity(engine: Engine) -> tuple[list[Any], list[Any]]:
    """The demo's customers and vehicles, by the columns that do not move with the date."""
    with engine.connect() as conn:
        people = conn.execute(
            select(C.c.code, C.c.name, C.c.phone, C.c.email, C.c.language, C.c.segment).order_by(
                C.c.id
            )
        ).all()
        cars = conn.execute(
            select(V.c.vin, V.c.customer_id, V.c.make, V.c.model, V.c.year).order_by(V.c.id)
        ).all()
    return list(people), list(cars)


def test_demo_builds_a_dealership_sweeps_it_and_writes_the_call_list(tmp_path: Path) -> None:
    output = tmp_path / "demo"
    # Sending all day: the calls made must not depend on the hour the test runs at.
    first = milepost(
        "demo", "--seed", "11", "--output", str(output), MILEPOST_QUIET_HOURS="00:00-00:00"
    )
    assert first.returncode == 0, first.stdout + first.stderr

    engine = create_engine(f"sqlite:///{output / 'demo.db'}")
    try:
        with engine.connect() as conn:
            customers = conn.execute(select(func.count()).select_from(C)).scalar_one()
        before = identity(engine)
    finally:
        engine.dispose()
    assert customers >= 2000  # the default size: a realistic dealership

    out = first.stdout
    header = next(line for line in out.splitlines() if "campaign" in line and "matched" in line)
    assert re.search(r"campaign\s*┃\s*matched\s*┃\s*messages\s*┃\s*calls", header)
    rows = table_rows(out)
    assert len(rows) >= 10, out
    assert all(re.fullmatch(r"[a-z0-9-]+", row[0]) for row in rows)
    assert all(cell.isdigit() for row in rows for cell in row[1:4])
    said = re.search(r"(\d+) new matches in (\d+) campaigns", out)
    assert said, out
    assert int(said[1]) == sum(int(row[1]) for row in rows) and int(said[2]) == len(rows)

    target = output / "calls.csv"
    listed = re.search(r"(\d+) open calls on today's list, written to (\S+)\.", out)
    assert listed, out
    assert Path(listed[2]) == target
    assert target.read_bytes().startswith(b"\xef\xbb\xbfid,priority,due_by,overdue,customer")
    calls = read_csv(target)
    assert len(calls) == int(listed[1]) > 0
    assert all(row["script"] and row["campaign"] for row in calls)

    # Again into the same folder: a fresh database (not added to the old one), the same dealer.
    again = milepost(
        "demo", "--seed", "11", "--output", str(output), MILEPOST_QUIET_HOURS="00:00-00:00"
    )
    assert again.returncode == 0, again.stdout + again.stderr
    engine = create_engine(f"sqlite:///{output / 'demo.db'}")
    try:
        assert identity(engine) == before
    finally:
        engine.dispose()


def test_the_demo_generator_gives_the_same_dealer_for_a_seed_and_another_for_another(
    tmp_path: Path,
) -> None:
    def dealer(name: str, seed: int) -> tuple[list[Any], list[Any]]:
        url = f"sqlite:///{tmp_path / name}"
        upgrade(url)
        generate(url, customers=150, seed=seed, today=DAY)
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                # Here the day is the same, so every column of every row must agree.
                return (
                    list(conn.execute(select(C).order_by(C.c.id))),
                    list(conn.execute(select(V).order_by(V.c.id))),
                )
        finally:
            engine.dispose()

    one, same, other = dealer("a.db", 5), dealer("b.db", 5), dealer("c.db", 6)

    assert one == same
    assert one != other


def test_facts_lists_every_fact_of_the_catalog_with_its_type_and_meaning() -> None:
    result = milepost("facts")

    assert result.returncode == 0, result.stderr
    printed = {row[0]: (row[1], row[2]) for row in table_rows(result.stdout)}
    assert set(printed) == set(CATALOG)
    for name, fact in CATALOG.items():
        kind, meaning = printed[name]
        assert meaning.startswith(fact.meaning), (name, meaning)  # a note may follow it
        assert kind.startswith(fact.type), (name, kind)
        assert all(value in kind for value in fact.values), (name, kind)


@pytest.fixture
def fresh_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """MILEPOST_DATABASE_URL pointing at a SQLite file that does not exist yet."""
    path = tmp_path / "new.db"
    monkeypatch.setenv("MILEPOST_DATABASE_URL", f"sqlite:///{path}")
    reset_runtime()  # the settings are read once: read them again, with this URL
    yield path
    reset_runtime()


def schema(path: Path) -> tuple[list[Any], str]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            query = text("SELECT type, name, sql FROM sqlite_master ORDER BY name")
            ddl = list(conn.execute(query))
            version = str(
                conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            )
    finally:
        engine.dispose()
    return ddl, version


def test_db_upgrade_creates_the_schema_and_a_second_run_changes_nothing(fresh_file: Path) -> None:
    runner = CliRunner()

    first = runner.invoke(app, ["db", "upgrade"])

    assert first.exit_code == 0, first.output
    assert "up to date" in first.output
    engine = create_engine(f"sqlite:///{fresh_file}")
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"alembic_version", "customers", "vehicles", "deliveries", "call_tasks"} <= tables
    created = schema(fresh_file)

    second = runner.invoke(app, ["db", "upgrade"])

    assert second.exit_code == 0, second.output
    assert schema(fresh_file) == created


@pytest.fixture
def morning() -> Iterator[None]:
    with time_machine.travel(MORNING, tick=True):
        yield


def test_calls_lists_todays_open_calls_and_writes_the_same_rows_as_csv(
    runtime: Runtime, tmp_path: Path, morning: None
) -> None:
    generate(runtime.settings.database_url, customers=300, seed=5, today=DAY)
    runner = CliRunner()
    swept = runner.invoke(app, ["sweep"])  # no --date either: today, by the (travelled) clock
    assert swept.exit_code == 0, swept.output
    target = tmp_path / "out" / "calls.csv"

    listed = runner.invoke(app, ["calls", "--csv", str(target)])

    assert listed.exit_code == 0, listed.output
    said = re.search(r"(\d+) open calls for (\S+)", listed.output)
    assert said, listed.output
    assert said[2] == DAY.isoformat()
    rows = read_csv(target)
    assert len(rows) == int(said[1]) > 0
    with runtime.engine.connect() as conn:
        tasks = {
            str(t.id): t
            for t in conn.execute(
                select(T.c.id, T.c.phone, T.c.campaign).where(T.c.status == "open")
            )
        }
    assert {row["id"] for row in rows} == set(tasks)  # every open call of today, once
    assert all(
        row["phone"] == (tasks[row["id"]].phone or "")
        and row["campaign"] == tasks[row["id"]].campaign
        for row in rows
    )
    priorities = [int(row["priority"]) for row in rows]
    assert priorities == sorted(priorities, reverse=True)  # most important first
    shown = [cells[0] for cells in table_rows(listed.output) if cells[0]]
    assert shown == [row["id"] for row in rows][:50]  # the table is the CSV's first 50 rows
