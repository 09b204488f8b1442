"""Shared fixtures: a migrated database, and the real servers when a test needs them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm.migrate import upgrade

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
