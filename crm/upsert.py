"""INSERT … ON CONFLICT DO NOTHING for whichever database the connection is on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(conn: Connection, model: Any, keys: list[str]) -> Any:
    """An insert that silently skips rows whose ``keys`` already exist."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(model).on_conflict_do_nothing(index_elements=keys)
