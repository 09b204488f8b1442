"""Sweep runs: how far a sweep got, kept in the database so a CLI on any machine can follow it.

A run is created before its `sweep` message is queued; the worker that splits the fleet records
how many ranges there are; each `evaluate` marks its range done in the transaction of its
ledger rows, so a marker means the rows are committed. The marker's key (run, lo) makes a
retried or duplicated `evaluate` count once: only a new marker adds to the run's `done`, and
that UPDATE holds the run's row lock to the commit, so whichever range finishes last stamps
`finished_at`, however many workers race.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    and_,
    bindparam,
    case,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from crm.models import SweepRange, SweepRun, table
from crm.types import UTCDateTime

R, RR = table(SweepRun), table(SweepRange)


@dataclass(frozen=True)
class RunState:
    """A run as last recorded."""

    id: int
    as_of: datetime
    started_at: datetime
    ranges: int | None  # None: no worker has planned the ranges yet
    done: int
    finished_at: datetime | None


def create(engine: Engine, as_of: datetime) -> int:
    """Record a new run evaluating as of ``as_of``; its id."""
    with engine.begin() as conn:
        stmt = insert(R).values(as_of=as_of, started_at=datetime.now(UTC), done=0)
        return int(conn.execute(stmt.returning(R.c.id)).scalar_one())


def planned(engine: Engine, run_id: int, ranges: int) -> None:
    """Record how many ranges the run was split into; a run of none is finished at once."""
    now = _stamp(datetime.now(UTC))
    # A retried `sweep` plans again: keep an earlier finish, stamp one if this plan completes it.
    finish = and_(R.c.finished_at.is_(None), R.c.done >= ranges)
    with engine.begin() as conn:
        conn.execute(
            update(R)
            .where(R.c.id == run_id)
            .values(
                ranges=ranges,
                planned_at=now,
                finished_at=case((finish, now), else_=R.c.finished_at),
            )
        )


def range_done(conn: Connection, run_id: int, lo: int, hi: int) -> bool:
    """Mark lo..hi of the run evaluated, in the caller's transaction; False if it already was."""
    mark, count = _marking(conn.dialect.name)
    values = {"run_id": run_id, "lo": lo, "hi": hi, "now": datetime.now(UTC)}
    if conn.execute(mark, values).first() is None:
        return False
    conn.execute(count, values)
    return True


@cache
def _marking(dialect: str) -> tuple[Executable, Executable]:
    # Built once: this runs once per range in every worker's hot path.
    now = bindparam("now", type_=UTCDateTime())
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING.
    mark = (
        dialect_insert(RR)
        .values(run_id=bindparam("run_id"), lo=bindparam("lo"), hi=bindparam("hi"), done_at=now)
        .on_conflict_do_nothing(index_elements=["run_id", "lo"])
        .returning(RR.c.lo)
    )
    last = case((R.c.done + 1 >= R.c.ranges, now), else_=R.c.finished_at)
    count = (
        update(R).where(R.c.id == bindparam("run_id")).values(done=R.c.done + 1, finished_at=last)
    )
    return mark, count


def get(engine: Engine, run_id: int) -> RunState | None:
    """The run as recorded now, or None if there is no such run."""
    query = select(R.c.id, R.c.as_of, R.c.started_at, R.c.ranges, R.c.done, R.c.finished_at)
    with engine.connect() as conn:
        row = conn.execute(query.where(R.c.id == run_id)).one_or_none()
    return None if row is None else RunState(*row)


def _stamp(moment: datetime) -> object:
    # Typed, so a datetime inside CASE is stored as naive UTC like every other column.
    return literal(moment, UTCDateTime())
