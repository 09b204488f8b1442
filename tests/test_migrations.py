"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from crm.db import get_engine
from crm.migrate import alembic_config, upgrade
from crm.models import Base


def differences(url: str) -> list[object]:
    with get_engine(url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_migrations_match_the_models_and_go_down_and_up_again(
    database: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("db_url" if database == "sqlite" else "pg_url")  # at head

    assert differences(url) == []  # a model change without its migration shows here

    command.downgrade(alembic_config(url), "base")
    upgrade(url)
    assert differences(url) == []
