"""docker-compose.yml, the Dockerfile and .env.example tell the truth about Milepost.

No Docker engine runs here, so each application service's `command` runs as a process against
the local servers instead, with compose's hostnames swapped for them: PostgreSQL and Redis.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from conftest import pg_database
from processes import MILEPOST, ROOT, Daemon, free_port, http_get, milepost_env
from sqlalchemy import create_engine, inspect

from worker.cli import app
from worker.daemons import SHUTDOWN_TIMEOUT_MS
from worker.settings import Settings

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APPLICATION = ("migrate", "worker", "scheduler", "api")
LONG_RUNNING = ("worker", "scheduler", "api")
SETTING = re.compile(r"\bMILEPOST_[A-Z0-9_]+\b")


def argv(words: list[str]) -> list[str]:
    """A compose command or health check as run here: `milepost` is this virtualenv's."""
    words = words[1:] if words[0] == "CMD" else words
    return [MILEPOST if words[0] == "milepost" else words[0], *words[1:]]


def service_env(
    name: str, database_url: str, broker_url: str, **local: str | int
) -> dict[str, str]:
    environment = dict(SERVICES[name].get("environment", {}))
    assert {"MILEPOST_DATABASE_URL", "MILEPOST_BROKER_URL"} <= set(environment), name
    environment.update(MILEPOST_DATABASE_URL=database_url, MILEPOST_BROKER_URL=broker_url)
    settings = {k.removeprefix("MILEPOST_").lower(): v for k, v in environment.items()}
    return milepost_env(**{**settings, **local})


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A PostgreSQL database with no schema at all, as the compose `postgres` starts."""
    with pg_database("milepost_empty") as url:
        yield url


@pytest.mark.parametrize("service", APPLICATION)
def test_each_service_runs_a_milepost_command_and_health_check_that_exist(service: str) -> None:
    spec = SERVICES[service]
    checks = [spec["command"]] + ([spec["healthcheck"]["test"]] if "healthcheck" in spec else [])
    if service != "migrate":
        assert "healthcheck" in spec and spec["restart"] == "unless-stopped", service
    for words in checks:
        words = words[1:] if words[0] == "CMD" else words
        assert words[0] == "milepost", f"{service}: {words} is not a milepost command"
        command: Any = typer.main.get_command(app)
        rest = words[1:]
        while getattr(command, "commands", None) is not None:  # `db upgrade`: walk down
            assert rest and rest[0] in command.commands, f"{service}: no `{' '.join(words)}`"
            command, rest = command.commands[rest[0]], rest[1:]
        command.make_context(words[1], list(rest))  # raises on an unknown option


def test_migrate_creates_the_schema_and_exits_0(empty_pg_url: str, redis_url: str) -> None:
    env = service_env("migrate", empty_pg_url, redis_url)

    done = subprocess.run(argv(SERVICES["migrate"]["command"]), env=env, timeout=60)

    assert done.returncode == 0
    engine = create_engine(empty_pg_url)
    try:
        assert {"deliveries", "call_tasks", "alembic_version"} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def ready(name: str, daemon: Daemon, api_port: int) -> str | bool | None:
    """The sign each service gives once it is up."""
    if name == "api":
        return http_get(f"http://127.0.0.1:{api_port}/health")
    return daemon.says({"worker": "ready for action", "scheduler": "scheduler started"}[name])


@pytest.mark.timeout(90)
def test_the_long_running_services_come_up_and_stop_cleanly_on_sigterm(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    api_port = free_port()
    local = {"metrics_port": free_port(), "api_port": api_port}
    envs = {name: service_env(name, pg_url, redis_url, **local) for name in LONG_RUNNING}
    daemons: dict[str, Daemon] = {}
    try:
        for name in LONG_RUNNING:  # side by side, as compose starts them
            daemons[name] = Daemon(argv(SERVICES[name]["command"]), envs[name], tmp_path / name)
        for name, daemon in daemons.items():
            daemon.wait_for(partial(ready, name, daemon, api_port), 30, f"{name} up")

        checks = {
            name: subprocess.Popen(
                argv(SERVICES[name]["healthcheck"]["test"]),
                env=envs[name],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name in LONG_RUNNING
        }
        for name, check in checks.items():
            output, _ = check.communicate(timeout=30)
            assert check.returncode == 0, f"{name} health check: {output}"
            assert daemons[name].alive(), daemons[name].output()

        for daemon in daemons.values():
            daemon.terminate()
        for name, daemon in daemons.items():
            code, took = daemon.exited()
            assert code == 0, f"{name} exited {code} on SIGTERM:\n{daemon.output()}"
            assert took < 15, f"{name} took {took:.1f} s to stop"
    finally:
        for daemon in daemons.values():
            daemon.cleanup()


def test_the_worker_gets_time_to_finish_before_docker_kills_it() -> None:
    grace = SERVICES["worker"]["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) * 1000 > SHUTDOWN_TIMEOUT_MS


def test_every_setting_is_in_env_example_and_nothing_else() -> None:
    listed = set(SETTING.findall((ROOT / ".env.example").read_text()))
    settings = {f"MILEPOST_{name.upper()}" for name in Settings.model_fields}
    in_compose = {
        key
        for spec in SERVICES.values()
        for key in spec.get("environment", {})
        if key.startswith("MILEPOST_")
    }

    assert settings - listed == set(), "settings missing from .env.example"
    assert listed - settings == set(), ".env.example names settings that do not exist"
    assert in_compose <= settings


def test_the_values_in_env_example_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"MILEPOST_{name.upper()}", raising=False)
    defaults = Settings().model_dump()
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith("MILEPOST_"):
            key, _, value = line.partition("=")
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("MILEPOST_CAMPAIGNS")  # relative in the example: the image's WORKDIR

    assert Settings().model_dump() == defaults


def test_the_image_holds_every_package_and_the_campaigns() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]

    copied = {m.group(1) for m in re.finditer(r"^COPY (\w+) ", dockerfile, re.MULTILINE)}
    assert set(packages) | {"campaigns"} <= copied
    assert "COPY campaigns /app/campaigns" in dockerfile
    assert "MILEPOST_CAMPAIGNS=/app/campaigns" in dockerfile
    assert "uv.lock" in dockerfile and "--frozen" in dockerfile
