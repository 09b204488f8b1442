"""Every command turns an error into one sentence naming the setting or file, never a traceback."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from processes import MILEPOST, milepost_env
from typer.testing import CliRunner

from crm.migrate import upgrade
from worker.cli import app

SECRET = "s3cret"


@dataclass(frozen=True)
class Case:
    argv: list[str]
    settings: dict[str, str] = field(default_factory=dict)
    says: tuple[str, ...] = ()  # the sentence holds each of these ({tmp}: the case's folder)
    exit_code: int = 2


CASES = {
    "database URL that is no URL (sweep)": Case(
        ["sweep"], {"database_url": "notaurl"}, ("MILEPOST_DATABASE_URL 'notaurl'",)
    ),
    "database URL that is no URL (db upgrade)": Case(
        ["db", "upgrade"], {"database_url": "notaurl"}, ("MILEPOST_DATABASE_URL 'notaurl'",)
    ),
    "unknown database": Case(
        ["calls"],
        {"database_url": f"foo://milepost:{SECRET}@db/x"},
        ("MILEPOST_DATABASE_URL 'foo://milepost:***@db/x'", "sqlite:///"),
    ),
    "database driver not installed": Case(
        ["deliveries"],
        {"database_url": f"mysql://milepost:{SECRET}@db/x"},
        ("MILEPOST_DATABASE_URL", "MySQLdb", "not installed"),
    ),
    "unreachable PostgreSQL": Case(
        ["db", "upgrade"],
        {"database_url": f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/x"},
        ("Cannot use the database", "MILEPOST_DATABASE_URL 'postgresql+psycopg://postgres:***@"),
    ),
    "unknown broker": Case(
        ["sweep"],
        {"broker_url": f"foo://milepost:{SECRET}@broker"},
        ("MILEPOST_BROKER_URL 'foo://milepost:***@broker'", "redis://"),
    ),
    "unreachable Redis": Case(
        ["sweep"],
        {"broker_url": f"redis://:{SECRET}@127.0.0.1:1/0"},
        ("Cannot reach the broker", "MILEPOST_BROKER_URL 'redis://:***@127.0.0.1:1/0'"),
    ),
    "bad setting": Case(["calls"], {"timezone": "Mars/Olympus"}, ("MILEPOST_TIMEZONE", "IANA")),
    "import of a file, not a folder": Case(
        ["import", "{tmp}/customers.csv"], {}, ("{tmp}/customers.csv", "folder of CSV files")
    ),
    "import of a missing folder": Case(["import", "{tmp}/nowhere"], {}, ("{tmp}/nowhere",)),
    "ingest of a missing file": Case(["ingest", "{tmp}/events.jsonl"], {}, ("{tmp}/events.jsonl",)),
}


Outcome = tuple[Path, "subprocess.CompletedProcess[str]"]  # the case's folder, and the run


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case run as the real `milepost`, all at once (each starts a Python)."""
    running = {}
    for name, case in CASES.items():
        tmp = tmp_path_factory.mktemp("case")
        (tmp / "customers.csv").write_text("code,name\n", encoding="utf-8")
        database = f"sqlite:///{tmp / 'milepost.db'}"
        upgrade(database)
        argv = [MILEPOST, *(arg.replace("{tmp}", str(tmp)) for arg in case.argv)]
        env = milepost_env(**{"database_url": database, **case.settings})
        running[name] = (
            tmp,
            subprocess.Popen(argv, env=env, cwd=tmp, text=True, stdout=-1, stderr=-1),
        )
    done = {}
    for name, (tmp, proc) in running.items():
        stdout, stderr = proc.communicate(timeout=60)
        done[name] = tmp, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return done


@pytest.mark.parametrize("name", CASES)
def test_an_error_is_one_sentence_naming_what_to_fix(
    name: str, outcomes: dict[str, Outcome]
) -> None:
    case, (tmp, result) = CASES[name], outcomes[name]
    output = result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == case.exit_code, output
    assert len(lines) == 1 and lines[0].endswith("."), output
    for part in case.says:
        assert part.replace("{tmp}", str(tmp)) in lines[0], output
    assert "Traceback" not in output and SECRET not in output


def test_milepost_debug_shows_the_traceback_after_the_sentence(tmp_path: Path) -> None:
    env = milepost_env(database_url="notaurl", debug="1")
    result = subprocess.run(
        [MILEPOST, "calls"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert result.stderr.startswith("MILEPOST_DATABASE_URL 'notaurl' is not a database URL")
    assert "Traceback" in result.stderr and "ArgumentError" in result.stderr


def test_an_unexpected_error_names_its_type_and_how_to_see_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> bool:
        raise RuntimeError("the flux capacitor is empty")

    monkeypatch.delenv("MILEPOST_DEBUG", raising=False)
    monkeypatch.setattr("worker.campaign_commands.check", broken)
    result = CliRunner().invoke(app, ["campaigns", "check"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # not the RuntimeError: it was handled
    assert "RuntimeError: the flux capacitor is empty" in result.output
    assert "MILEPOST_DEBUG=1" in result.output


def test_ctrl_c_exits_130_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: object) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr("worker.campaign_commands.run_examples", interrupted)
    result = CliRunner().invoke(app, ["campaigns", "test"])
    assert result.exit_code == 130 and result.output == ""


def test_usage_errors_stay_typers_own() -> None:
    result = CliRunner().invoke(app, ["sweep", "--watch", "1", "--date", "2025-01-01"])
    assert result.exit_code == 2 and "drop --date" in result.output
