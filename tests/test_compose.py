"""docker-compose.yml, the Dockerfile and .env.example tell the truth about Milepost.

No Docker engine runs here, so each application service's `command` runs as a process against
the local servers instead, pointed at them as an operator would: by the variables compose fills
into docker-compose.yml (`${VAR:-default}`), which this file resolves by compose's rules.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import tomllib
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import typer.main
import yaml
from conftest import pg_database
from processes import MILEPOST, ROOT, Daemon, free_port, http_get, milepost_env
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from worker.cli import app
from worker.daemons import SHUTDOWN_TIMEOUT_MS
from worker.runtime import reset_runtime
from worker.settings import Settings

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APPLICATION = ("migrate", "worker", "scheduler", "api")
LONG_RUNNING = ("worker", "scheduler", "api")
SETTING = re.compile(r"\bMILEPOST_[A-Z0-9_]+\b")
COMPOSE_POSTGRES = "postgresql+psycopg://milepost:milepost@postgres:5432/milepost"
COMPOSE_REDIS = "redis://redis:6379/0"
# `$$`, `${…}` or `$NAME`: what compose replaces in every string of the file.
REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_]\w*))")
DEFAULTED = re.compile(r"(?P<name>[A-Za-z_]\w*):-(?P<default>.+)", re.DOTALL)


def references(node: object) -> Iterator[re.Match[str]]:
    """Every `$…` compose would interpolate in ``node``, a piece of the parsed file."""
    if isinstance(node, str):
        yield from REFERENCE.finditer(node)
    elif isinstance(node, dict):
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def interpolate(node: object, variables: Mapping[str, str]) -> Any:
    """``node`` as compose fills it in: `${VAR:-default}` is VAR when set and not empty."""
    if isinstance(node, dict):
        return {key: interpolate(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, variables) for item in node]
    if not isinstance(node, str):
        return node

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        rule = DEFAULTED.fullmatch(match["braced"] or "")
        assert rule, f"{match[0]}: write ${{VAR:-default}}, so compose works with no .env"
        return variables.get(rule["name"]) or rule["default"]

    return REFERENCE.sub(one, node)


def dotenv(path: Path) -> dict[str, str]:
    """A .env file's variables (compose's format, as far as .env.example uses it)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def resolved(dot_env: Mapping[str, str] = {}, shell: Mapping[str, str] = {}) -> dict[str, Any]:
    """docker-compose.yml as compose reads it: the shell's variables win over the .env file's."""
    return cast(dict[str, Any], interpolate(COMPOSE, {**dot_env, **shell}))


def container_env(
    service: str, dot_env: Mapping[str, str] = {}, shell: Mapping[str, str] = {}
) -> dict[str, str]:
    """The MILEPOST_* a service's container starts with: its env_file, then `environment:`.

    The shell's variables reach a container only through the interpolation.
    """
    spec = resolved(dot_env, shell)["services"][service]
    env: dict[str, str] = {}
    for entry in spec.get("env_file", []):
        assert (entry["path"] if isinstance(entry, dict) else entry) == ".env", service
        env.update(dot_env)
    env.update({key: str(value) for key, value in spec.get("environment", {}).items()})
    return {key: value for key, value in env.items() if key.startswith("MILEPOST_")}


def argv(words: list[str]) -> list[str]:
    """A compose command or health check as run here: `milepost` is this virtualenv's."""
    words = words[1:] if words[0] == "CMD" else words
    return [MILEPOST if words[0] == "milepost" else words[0], *words[1:]]


def service_env(
    name: str, database_url: str, broker_url: str, api_port: int = 8000, **local: str | int
) -> dict[str, str]:
    """The service's environment under compose, run with the local servers' URLs and a port
    in the shell; ``local``: settings compose does not give (free ports, a heartbeat file)."""
    shell = {
        "MILEPOST_DATABASE_URL": database_url,
        "MILEPOST_BROKER_URL": broker_url,
        "MILEPOST_API_PORT": str(api_port),
    }
    container = container_env(name, shell=shell)
    assert container["MILEPOST_DATABASE_URL"] == database_url, name
    assert container["MILEPOST_BROKER_URL"] == broker_url, name
    return milepost_env(**local) | container


def test_every_variable_compose_fills_in_has_a_default() -> None:
    found = {}
    for match in references(COMPOSE):
        rule = DEFAULTED.fullmatch(match["braced"] or "")
        assert rule, f"{match[0]}: write ${{VAR:-default}}, so compose works with no .env"
        found[rule["name"]] = rule["default"]

    assert {"MILEPOST_DATABASE_URL", "MILEPOST_BROKER_URL", "MILEPOST_API_PORT"} <= set(found)
    assert found["MILEPOST_API_PORT"] == str(Settings.model_fields["api_port"].default)


@pytest.mark.parametrize("dot_env", [{}, dotenv(ROOT / ".env.example")], ids=["no-env", "example"])
def test_with_no_env_or_the_example_copied_the_services_use_composes_servers(
    dot_env: dict[str, str],
) -> None:
    # The example sets no database URL: copied as it is, it must not give each container
    # a SQLite file of its own.
    for service in APPLICATION:
        env = container_env(service, dot_env)
        assert env["MILEPOST_DATABASE_URL"] == COMPOSE_POSTGRES, service
        assert env["MILEPOST_BROKER_URL"] == COMPOSE_REDIS, service
    assert resolved(dot_env)["services"]["api"]["ports"] == ["8000:8000"]
    assert container_env("api", dot_env)["MILEPOST_API_PORT"] == "8000"


PRODUCTION = {
    "MILEPOST_DATABASE_URL": "postgresql+psycopg://milepost:secret@db.example.com:5432/milepost",
    "MILEPOST_BROKER_URL": "amqp://guest:guest@rabbitmq:5672/",
    "MILEPOST_API_PORT": "9000",
}


@pytest.mark.parametrize(
    ("dot_env", "shell", "port"),
    [
        (PRODUCTION, {}, "9000"),  # in .env
        ({}, PRODUCTION, "9000"),  # in the shell: `MILEPOST_API_PORT=9000 docker compose up`
        (PRODUCTION, {"MILEPOST_API_PORT": "9100"}, "9100"),  # the shell wins over .env
        ({"MILEPOST_API_PORT": ""}, {}, "8000"),  # set empty: the default
    ],
)
def test_a_url_or_port_set_in_env_or_the_shell_reaches_every_service_and_the_mapping(
    dot_env: dict[str, str], shell: dict[str, str], port: str
) -> None:
    given = {**dot_env, **shell}
    for service in APPLICATION:
        env = container_env(service, dot_env, shell)
        assert env["MILEPOST_DATABASE_URL"] == given.get("MILEPOST_DATABASE_URL", COMPOSE_POSTGRES)
        assert env["MILEPOST_BROKER_URL"] == given.get("MILEPOST_BROKER_URL", COMPOSE_REDIS)

    # The API listens on MILEPOST_API_PORT (no --port) and its health check asks it there.
    assert "--port" not in SERVICES["api"]["command"]
    assert container_env("api", dot_env, shell)["MILEPOST_API_PORT"] == port
    assert resolved(dot_env, shell)["services"]["api"]["ports"] == [f"{port}:{port}"]


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


def ready(name: str, daemon: Daemon, api_port: int, heartbeat: Path) -> str | bool | None:
    """The sign each service gives once it is up (the scheduler: its first tick finished)."""
    if name == "api":
        return http_get(f"http://127.0.0.1:{api_port}/health")
    if name == "scheduler":
        return daemon.says("scheduler started") and heartbeat.exists()
    return daemon.says("ready for action")


@pytest.mark.timeout(90)
def test_the_long_running_services_come_up_and_stop_cleanly_on_sigterm(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    api_port = free_port()
    heartbeat = tmp_path / "scheduler.heartbeat"
    local = {"metrics_port": free_port(), "scheduler_heartbeat": str(heartbeat)}
    envs = {name: service_env(name, pg_url, redis_url, api_port, **local) for name in LONG_RUNNING}
    daemons: dict[str, Daemon] = {}
    try:
        for name in LONG_RUNNING:  # side by side, as compose starts them
            daemons[name] = Daemon(argv(SERVICES[name]["command"]), envs[name], tmp_path / name)
        for name, daemon in daemons.items():
            daemon.wait_for(partial(ready, name, daemon, api_port, heartbeat), 30, f"{name} up")

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


@pytest.mark.parametrize(
    ("age_s", "healthy", "says"),
    [
        (None, False, "the scheduler is not running or has finished no tick since it started"),
        (1, True, "ok: the database, scheduler answered"),
        (25, True, "ok: the database, scheduler answered"),  # within 3 ticks of 10 s
        (45, False, "s ago, over 3 ticks of MILEPOST_SCHEDULER_TICK_S (30 s)"),
    ],
)
def test_the_scheduler_health_check_fails_once_its_last_tick_is_3_ticks_old(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    age_s: int | None,
    healthy: bool,
    says: str,
) -> None:
    heartbeat = tmp_path / "scheduler[1].heartbeat"  # brackets: printed as they are
    if age_s is not None:
        heartbeat.touch()
        os.utime(heartbeat, (time.time() - age_s, time.time() - age_s))
    monkeypatch.setenv("MILEPOST_SCHEDULER_HEARTBEAT", str(heartbeat))
    monkeypatch.setenv("MILEPOST_SCHEDULER_TICK_S", "10")
    reset_runtime()
    try:
        result = CliRunner().invoke(app, ["health", "--scheduler"])
    finally:
        reset_runtime()

    output = " ".join(result.output.split())  # as one line, however the console wrapped it
    assert result.exit_code == (0 if healthy else 1), output
    assert says in output
    if not healthy:  # one sentence, the file named as it is
        assert output.startswith("Unhealthy: the scheduler") and output.endswith(".")
        assert output.count(". ") == 0 and (age_s or str(heartbeat) in output)


@pytest.mark.timeout(60)
def test_a_scheduler_whose_ticks_fail_is_unhealthy(db_url: str, tmp_path: Path) -> None:
    heartbeat = tmp_path / "scheduler.heartbeat"
    heartbeat.touch()  # left by the last run: it must not count for this one
    env = milepost_env(
        database_url=db_url, broker_url="redis://127.0.0.1:1/0", scheduler_heartbeat=str(heartbeat)
    )
    scheduler = Daemon(argv(SERVICES["scheduler"]["command"]), env, tmp_path / "scheduler")
    try:
        scheduler.wait_for(partial(scheduler.says, "raised an exception"), 30, "a failed tick")
        check = subprocess.run(
            argv(SERVICES["scheduler"]["healthcheck"]["test"]),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

        assert check.returncode == 1, check.stdout + check.stderr
        assert "has finished no tick since it started" in " ".join(check.stderr.split())
    finally:
        scheduler.cleanup()


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
