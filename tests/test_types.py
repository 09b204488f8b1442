"""UTCDateTime on SQLite: the text it stores is SQLAlchemy's, so SQL comparing it stays right."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    create_engine,
    insert,
    select,
)
from sqlalchemy.exc import StatementError

from crm.types import UTCDateTime

BEIJING = timezone(timedelta(hours=8))
metadata = MetaData()
stamps = Table(
    "stamps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime),
    Column("plain", DateTime),  # SQLAlchemy's own type: the reference for the stored text
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'types.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_the_stored_text_is_sqlalchemys_and_reads_back_aware_utc(engine: Engine) -> None:
    values = [
        datetime(2026, 11, 23, 9, 30, tzinfo=UTC),
        datetime(2026, 1, 1, 7, 59, 59, 999999, tzinfo=BEIJING),  # 2025-12-31 23:59:59 UTC
        datetime(5, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    ]
    with engine.begin() as conn:
        for at in values:
            naive = at.astimezone(UTC).replace(tzinfo=None)
            conn.execute(insert(stamps).values(at=at, plain=naive))
        stored = conn.exec_driver_sql("SELECT at, plain FROM stamps ORDER BY id").all()
        read = conn.execute(select(stamps.c.at).order_by(stamps.c.id)).scalars().all()

    assert [at for at, _ in stored] == [plain for _, plain in stored]
    assert stored[1][0] == "2025-12-31 23:59:59.999999"
    assert read == values
    assert all(at.tzinfo is UTC for at in read)


def test_text_written_elsewhere_reads_and_compares(engine: Engine) -> None:
    with engine.begin() as conn:  # no microseconds: as a hand-made or imported row may hold
        conn.exec_driver_sql("INSERT INTO stamps (id, at) VALUES (1, '2026-11-23 09:30:00')")
        conn.exec_driver_sql("INSERT INTO stamps (id, at) VALUES (2, '2026-11-23 09:30:00.000001')")
        read = conn.execute(select(stamps.c.at).where(stamps.c.id == 1)).scalar_one()
        due = select(stamps.c.id).where(
            stamps.c.at <= datetime(2026, 11, 23, 17, 30, tzinfo=BEIJING)
        )
        ids = conn.execute(due).scalars().all()

    assert read == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    assert ids == [1]


def test_a_naive_datetime_is_refused_with_what_to_do(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(StatementError, match="give Milepost aware"):
        conn.execute(insert(stamps).values(at=datetime(2026, 11, 23, 9, 30)))
