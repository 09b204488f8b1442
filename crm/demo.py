"""A deterministic demo dealership from a seed: into a database, or as the import CSV files.

Streams: rows are made and inserted ~10k vehicles at a time, each chunk in one transaction,
so memory stays flat from 2,500 customers to a million vehicles.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, create_engine, func, select

from crm.bulk import Converters, insert_rows
from crm.db import get_engine
from crm.demo_csv import export
from crm.demo_rows import TABLES, DealerRows
from crm.models import Base

CHUNK_VEHICLES = 10_000
BULK_CACHE_KIB = 64 * 1024


@dataclass(frozen=True)
class DemoStats:
    """How many rows of each kind the demo made."""

    customers: int
    vehicles: int
    service_visits: int
    memberships: int
    appointments: int
    complaints: int
    consents: int

    def __str__(self) -> str:
        return ", ".join(
            f"{getattr(self, f.name):,} {f.name.replace('_', ' ')}" for f in fields(self)
        )


def generate(
    url: str | None = None,
    *,
    customers: int = 2500,
    seed: int = 7,
    today: date,
    vehicles: int | None = None,
    tz: str = "Asia/Shanghai",
) -> DemoStats:
    """Fill the empty, migrated database at ``url`` with a demo dealership as of ``today``.

    ``vehicles``, when given, sets the size instead of ``customers``: customers are made until
    there are exactly that many vehicles.
    """
    return populate(
        get_engine(url), customers=customers, seed=seed, today=today, vehicles=vehicles, tz=tz
    )


def write_csv(
    directory: Path,
    *,
    customers: int = 200,
    seed: int = 7,
    today: date,
    tz: str = "Asia/Shanghai",
) -> DemoStats:
    """Write a demo dealership as the import files (customers.csv, vehicles.csv, …)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{Path(scratch) / 'demo.db'}")
        try:
            Base.metadata.create_all(engine)
            stats = populate(engine, customers=customers, seed=seed, today=today, tz=tz)
            export(engine, directory, ZoneInfo(tz))
        finally:
            engine.dispose()
    return stats


@contextmanager
def _bulk_loading(conn: Connection) -> Iterator[None]:
    # SQLite: a bigger page cache keeps the randomly ordered VIN index in memory (~15 % faster
    # at 300k vehicles, more beyond). Per connection, so restored before it goes back to the pool.
    if conn.dialect.name != "sqlite":
        yield
        return
    cache = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
    conn.exec_driver_sql(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")  # negative: in KiB
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        conn.exec_driver_sql(f"PRAGMA cache_size={int(cache)}")
        conn.commit()


def populate(
    engine: Engine,
    *,
    customers: int,
    seed: int,
    today: date,
    vehicles: int | None = None,
    tz: str = "Asia/Shanghai",
) -> DemoStats:
    """Generate into ``engine``'s database, which must hold no customers yet."""
    tables = Base.metadata.tables
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(tables["customers"])).scalar_one():
            raise ValueError("the demo fills an empty database; this one already has customers")
    convert = Converters(engine.dialect)
    rows = DealerRows(seed, today, ZoneInfo(tz), convert.day, convert.moment)

    def more() -> bool:
        if vehicles is not None:
            return rows.counts["vehicles"] < vehicles
        return rows.counts["customers"] < customers

    with engine.connect() as conn, _bulk_loading(conn):
        while more():
            # Ids are explicit and rows complete: a chunk is a handful of executemany calls.
            while more() and len(rows.rows["vehicles"]) < CHUNK_VEHICLES:
                left = 3 if vehicles is None else vehicles - rows.counts["vehicles"]
                rows.customer(max_vehicles=min(3, left))
            with conn.begin():
                for name, chunk in rows.take().items():
                    insert_rows(conn, tables[name], chunk)
    return DemoStats(**{name: rows.counts[name] for name in TABLES})
