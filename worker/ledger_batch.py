"""Ledger rows built straight into the form the database binds, and their multi-row insert.

The sweep writes a couple of ledger rows per vehicle, so their cost per row counts as much as
the database's: rows are values in COLUMNS order, appended to one list, the per-campaign parts
are worked out once per batch, each match's stored facts are written once for all its steps
(straight from all the facts: worker.stored_facts.stored_json), and the few datetimes of a
batch are converted once. The insert is ``INSERT … ON CONFLICT DO NOTHING RETURNING`` with
the rows as multi-row VALUES pages (SQLite ≥ 3.35, as SQLAlchemy's insertmanyvalues would send
them, without its per-row parameter processing, which cost more than the insert) or, on
PostgreSQL, as one array per column: one statement per batch and kind of row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from itertools import chain
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect

from crm.models import Delivery, table
from rules.campaign import Campaign
from worker.stored_facts import Encoder, Kept, encode, stored_json

D = table(Delivery)
KEY = ("campaign", "step", "subject_id", "occurrence")
PLAIN = ("customer_id", "vehicle_id", "channel", "template", "priority", "status", "attempts")
TIMES = ("due_at", "created_at", "updated_at")
COLUMNS = (*KEY, *PLAIN, "facts", *TIMES)  # the order of a row's values
WIDTH = len(COLUMNS)
PAGE = 500  # rows per VALUES statement: 7,500 parameters, well under SQLite's limit
__all__ = ["COLUMNS", "KEY", "PLAIN", "TIMES", "LedgerBatch", "TimeBinder", "encode", "insert_rows"]

Row = tuple[Any, ...]


class LedgerBatch:
    """The ledger rows of one batch of matches, all matched at ``matched_at`` on ``local_day``.

    Rows due by ``now`` and later ones are kept apart: only the new rows due now need their
    ids back (for a `deliver` job each), and RETURNING cost SQLite a quarter of the insert.
    With ``kept`` (campaign id -> worker.stored_facts.kept_facts), each row stores only the
    facts its campaign's templates print, written straight from all the facts; without it, the
    facts given are stored as they are.
    """

    def __init__(
        self,
        dialect: Dialect,
        local_day: date,
        matched_at: datetime,
        now: datetime,
        kept: Mapping[str, Kept | None] | None = None,
    ):
        self.local_day, self.matched_at, self.now_at = local_day, matched_at, now
        self.kept = kept
        self.times = TimeBinder(dialect)
        self.now = self.times.bind(now)
        # The rows' values one after the other, as they are bound: no tuple per row to build,
        # flatten, and for the cyclic garbage collector to go over while the batch grows.
        self._due: list[Any] = []
        self._later: list[Any] = []
        self._steps: dict[str, tuple[Encoder, list[tuple[Row, list[Any]]]]] = {}

    @property
    def rows(self) -> list[Row]:
        """Every row, in COLUMNS order."""
        values = self._due + self._later
        return [tuple(values[start : start + WIDTH]) for start in range(0, len(values), WIDTH)]

    def add(self, campaign: Campaign, record: Mapping[str, Any], facts: Any) -> None:
        """One row per step of ``campaign`` for a match on ``record`` with ``facts``."""
        prepared = self._steps.get(campaign.id)
        if prepared is None:
            prepared = self._steps[campaign.id] = self._prepare(campaign)
        stored, steps = prepared
        customer_id = record["customer_id"]
        if campaign.subject == "vehicle":
            subject = vehicle_id = record["vehicle_id"]
        else:
            subject, vehicle_id = customer_id, None
        text = None if facts is None else stored(facts)
        now = self.now
        for (cid, index, occurrence, channel, template, priority, due), values in steps:
            values += (cid, index, subject, occurrence, customer_id, vehicle_id, channel,
                       template, priority, "pending", 0, text, due, now, now)  # fmt: skip

    def insert(self, conn: Connection) -> list[int]:
        """Insert the rows, skipping keys already there; the ids of the new rows due now."""
        insert_values(conn, self._later, returning=())
        return [new[0] for new in insert_values(conn, self._due, returning=("id",))]

    def _prepare(self, campaign: Campaign) -> tuple[Encoder, list[tuple[Row, list[Any]]]]:
        stored = encode if self.kept is None else stored_json(self.kept.get(campaign.id))
        occurrence = campaign.occurrence(self.local_day)
        steps = []
        for step in campaign.steps:
            due = self.matched_at + step.after
            constants = (campaign.id, step.index, occurrence, step.channel, step.template,
                         campaign.priority, self.times.bind(due))  # fmt: skip
            steps.append((constants, self._due if due <= self.now_at else self._later))
        return stored, steps


def insert_rows(
    conn: Connection, rows: Sequence[Row], returning: tuple[str, ...] = ("id", *KEY)
) -> list[Row]:
    """Insert ``rows`` (values in COLUMNS order, bound as they are); ``returning`` of new rows."""
    if any(len(row) != WIDTH for row in rows):
        raise ValueError(f"a ledger row has {WIDTH} values, in COLUMNS order")
    return insert_values(conn, list(chain.from_iterable(rows)), returning)


def insert_values(
    conn: Connection, values: list[Any], returning: tuple[str, ...] = ("id", *KEY)
) -> list[Row]:
    """``insert_rows`` for rows given one after the other in one list."""
    count, rest = divmod(len(values), WIDTH)
    if rest:
        raise ValueError(f"{len(values)} values are not rows of {WIDTH}")
    if not count:
        return []
    if conn.dialect.name == "postgresql":
        # One array per column, unnested by the server: psycopg parses a statement's text for
        # its placeholders, and for thousands of them that took longer than the insert. Sent
        # binary (%b): the text form quoted each element in Python. (COPY into a temporary
        # table, then INSERT … SELECT, measured slower on both sides.)
        columns = tuple(values[column::WIDTH] for column in range(WIDTH))
        result = conn.exec_driver_sql(_unnest_sql(conn.dialect, returning), columns)
        return list(result.all()) if returning else []
    created: list[Row] = []
    start = 0
    for size in _page_sizes(count):
        end = start + size * WIDTH
        # A tuple: SQLAlchemy would take a list for many parameter sets.
        page = tuple(values[start:end])
        result = conn.exec_driver_sql(_values_sql(conn.dialect, size, returning), page)
        if returning:
            created += result.all()
        start = end
    return created


def _page_sizes(count: int) -> list[int]:
    # Full pages, then the rest in powers of two: ten statement texts in all, so the driver's
    # cache of prepared statements (sqlite3 keeps 128, large ones for these) is reused instead
    # of growing with one text per batch size: the worker's memory stays flat.
    sizes = [PAGE] * (count // PAGE)
    rest = count % PAGE
    sizes += [1 << bit for bit in range(rest.bit_length() - 1, -1, -1) if rest >> bit & 1]
    return sizes


def _values_sql(dialect: Dialect, count: int, returning: tuple[str, ...]) -> str:
    """The multi-row VALUES form (SQLite; any database with ON CONFLICT and RETURNING)."""
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    row = "(" + ", ".join([mark] * len(COLUMNS)) + ")"
    return _insert(dialect, f"VALUES {', '.join([row] * count)}", returning)


def _unnest_sql(dialect: Dialect, returning: tuple[str, ...]) -> str:
    """PostgreSQL: the rows as one array parameter per column."""
    mark = "%b" if dialect.driver == "psycopg" else "%s"
    arrays = ", ".join(f"{mark}::{D.c[name].type.compile(dialect)}[]" for name in COLUMNS)
    return _insert(dialect, f"SELECT * FROM unnest({arrays})", returning)


def _insert(dialect: Dialect, rows: str, returning: tuple[str, ...]) -> str:
    quote = dialect.identifier_preparer.quote
    back = f" RETURNING {', '.join(quote(c) for c in returning)}" if returning else ""
    return (
        f"INSERT INTO {quote(D.name)} ({', '.join(quote(c) for c in COLUMNS)}) {rows}"
        f" ON CONFLICT ({', '.join(quote(c) for c in KEY)}) DO NOTHING{back}"
    )


class TimeBinder:
    """What the ledger's datetime columns bind for a datetime, worked out once per value."""

    def __init__(self, dialect: Dialect) -> None:
        to_driver = D.c.due_at.type.dialect_impl(dialect).bind_processor(dialect)
        self._to_driver = to_driver or (lambda value: value)
        self._bound: dict[datetime, Any] = {}

    def bind(self, moment: datetime) -> Any:
        value = self._bound.get(moment)
        if value is None:
            value = self._bound[moment] = self._to_driver(moment)
        return value
