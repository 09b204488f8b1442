"""A job's leased connection runs its statements in autocommit, and goes back transactional."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, func, insert, select

from crm.db import _sqlite_pragmas
from crm.models import Customer, table
from worker.prepared import Lease

C = table(Customer)


def _engine(url: str):  # type: ignore[no-untyped-def]
    # One connection only: what the lease used is what the next user gets.
    engine = create_engine(url, pool_size=1, max_overflow=0)
    if url.startswith("sqlite"):
        from sqlalchemy import event

        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _check(url: str) -> None:
    engine = _engine(url)
    with Lease(engine) as db:
        cursor = db.get().cursor()
        cursor.execute(
            "INSERT INTO customers (code, name, language, segment)"
            " VALUES ('L1', 'auto', 'zh', 'private')"
        )
        cursor.close()
    with engine.connect() as conn:  # visible at once: no COMMIT was needed
        assert conn.scalar(select(func.count()).where(C.c.code == "L1")) == 1
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(
            insert(C).values(code="L2", name="rolled back", language="zh", segment="private")
        )
        raise RuntimeError("the caller's transaction fails")
    with engine.connect() as conn:  # the pool lent it back in transactions, not autocommit
        assert conn.scalar(select(func.count()).where(C.c.code == "L2")) == 0
    engine.dispose()


def test_on_sqlite(db_url: str) -> None:
    _check(db_url)


@pytest.mark.postgres
def test_on_postgresql(pg_url: str) -> None:
    _check(pg_url)
