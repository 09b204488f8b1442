"""Engines and sessions: one engine per URL, SQLite tuned for several writers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_URL = "sqlite:///milepost.db"


def database_url() -> str:
    return os.environ.get("MILEPOST_DATABASE_URL", DEFAULT_URL)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer; the long busy timeout makes concurrent
    # writers (two workers, a sweep and the API) wait instead of failing. A bigger cache_size,
    # mmap_size or wal_autocheckpoint made no difference to the 100k sweep that the noise did
    # not swamp: its time goes to Python and to SQLite's CPU work, not to page I/O.
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


# Connections kept open per process. SQLAlchemy's default (5) is below a worker's thread count:
# every checkout beyond it opened a fresh connection and closed it on return (PostgreSQL: a
# new backend process per delivery). Unused slots cost nothing; connections open on demand.
POOL_SIZE = 20


@cache
def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: MILEPOST_DATABASE_URL)."""
    url = url or database_url()
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=POOL_SIZE)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE)
    return engine


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    with factory() as session, session.begin():
        yield session
