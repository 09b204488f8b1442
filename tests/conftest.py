"""Shared fixtures: a migrated database, and the real servers when a test needs them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from channels.fakes.twilio_server import FakeTwilio
from crm.migrate import upgrade
from worker.runtime import Runtime, get_runtime, reset_runtime

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGNS = ROOT / "campaigns"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, migrated SQLite database, also set as MILEPOST_DATABASE_URL."""
    url = f"sqlite:///{tmp_path / 'milepost.db'}"
    upgrade(url)
    monkeypatch.setenv("MILEPOST_DATABASE_URL", url)
    yield url


def require_service(name: str, reason: str) -> None:
    """Skip on a laptop without the server; fail in CI, where it must run."""
    if os.environ.get("MILEPOST_REQUIRE_SERVICES"):
        pytest.fail(f"{name} is required in CI but unreachable: {reason}")
    pytest.skip(f"{name} unreachable ({reason}); start it to run this test")


POSTGRES_ADMIN = os.environ.get(
    "MILEPOST_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MILEPOST_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def runtime(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """This process's runtime on the fresh database, with the default campaigns."""
    monkeypatch.setenv("MILEPOST_CAMPAIGNS", str(CAMPAIGNS))
    reset_runtime()
    yield get_runtime()
    reset_runtime()


@contextmanager
def pg_database(prefix: str = "milepost") -> Iterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", str(exc).strip().splitlines()[0])
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    try:
        yield url
    finally:
        from crm.db import get_engine

        get_engine(url).dispose()
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of its own (dropped afterwards)."""
    with pg_database() as url:
        upgrade(url)
        yield url


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    """A fake Twilio on a free local port."""
    with FakeTwilio() as server:
        yield server


@contextmanager
def emptied_redis(url: str) -> Iterator[str]:
    """The Redis database at ``url``, emptied before and after."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=3)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        require_service("Redis", str(exc))
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own, emptied before and after."""
    with emptied_redis(REDIS_URL) as url:
        yield url
