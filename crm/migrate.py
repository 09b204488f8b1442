"""Schema migrations (Alembic), run by `milepost db upgrade` and the compose `migrate` service."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from crm.db import database_url


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url or database_url())
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``."""
    command.upgrade(alembic_config(url), revision)
