"""Ledger rows built straight into the form the database binds, and their multi-row insert.

The sweep writes a couple of ledger rows per vehicle, so their cost per row counts as much as
the database's: rows are tuples in COLUMNS order, the per-campaign parts are worked out once
per batch, each match's facts are encoded once for all its steps, and the few datetimes of a
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
from rules.facts import json_encoder

D = table(Delivery)
KEY = ("campaign", "step", "subject_id", "occurrence")
PLAIN = ("customer_id", "vehicle_id", "channel", "template", "priority", "status", "attempts")
TIMES = ("due_at", "created_at", "updated_at")
COLUMNS = (*KEY, *PLAIN, "facts", *TIMES)  # the order of a row's values
PAGE = 500  # rows per VALUES statement: 7,500 parameters, well under SQLite's limit
# Compact, and Chinese names as UTF-8 rather than \u escapes: a third of the bytes per row.
encode = json_encoder(ensure_ascii=False)

Row = tuple[Any, ...]


class LedgerBatch:
    """The ledger rows of one batch of matches, all matched at ``matched_at`` on ``local_day``.

    Rows due by ``now`` and later ones are kept apart: only the new rows due now need their
    ids back (for a `deliver` job each), and RETURNING cost SQLite a quarter of the insert.
    """

    def __init__(self, dialect: Dialect, local_day: date, matched_at: datetime, now: datetime):
        self.local_day, self.matched_at, self.now_at = local_day, matched_at, now
        self.times = TimeBinder(dialect)
        self.now = self.times.bind(now)
        self.due: list[Row] = []
        self.later: list[Row] = []
        self._steps: dict[str, list[tuple[Row, list[Row]]]] = {}

    @property
    def rows(self) -> list[Row]:
        """Every row, in COLUMNS order."""
        return self.due + self.later

    def add(self, campaign: Campaign, record: Mapping[str, Any], facts: Any) -> None:
        """One row per step of ``campaign`` for a match on ``record`` (facts as stored)."""
        steps = self._steps.get(campaign.id)
        if steps is None:
            steps = self._steps[campaign.id] = self._prepare(campaign)
        customer_id = record["customer_id"]
        if campaign.subject == "vehicle":
            subject = vehicle_id = record["vehicle_id"]
        else:
            subject, vehicle_id = customer_id, None
        text = None if facts is None else encode(facts)
        now = self.now
        for (cid, index, occurrence, channel, template, priority, due), rows in steps:
            rows.append(
                (cid, index, subject, occurrence, customer_id, vehicle_id, channel, template,
                 priority, "pending", 0, text, due, now, now)
            )  # fmt: skip

    def insert(self, conn: Connection) -> list[int]:
        """Insert the rows, skipping keys already there; the ids of the new rows due now."""
        insert_rows(conn, self.later, returning=())
        return [new[0] for new in insert_rows(conn, self.due, returning=("id",))]

    def _prepare(self, campaign: Campaign) -> list[tuple[Row, list[Row]]]:
        occurrence = campaign.occurrence(self.local_day)
        steps = []
        for step in campaign.steps:
            due = self.matched_at + step.after
            constants = (campaign.id, step.index, occurrence, step.channel, step.template,
                         campaign.priority, self.times.bind(due))  # fmt: skip
            steps.append((constants, self.due if due <= self.now_at else self.later))
        return steps


def insert_rows(
    conn: Connection, rows: Sequence[Row], returning: tuple[str, ...] = ("id", *KEY)
) -> list[Row]:
    """Insert ``rows`` (values in COLUMNS order, bound as they are); ``returning`` of new rows."""
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        # One array per column, unnested by the server: psycopg parses a statement's text for
        # its placeholders, and for thousands of them that took longer than the insert. Sent
        # binary (%b): the text form quoted each element in Python. (COPY into a temporary
        # table, then INSERT … SELECT, measured slower on both sides.)
        columns = tuple([list(column) for column in zip(*rows, strict=True)])
        result = conn.exec_driver_sql(_unnest_sql(conn.dialect, returning), columns)
        return list(result.all()) if returning else []
    created: list[Row] = []
    start = 0
    for size in _page_sizes(len(rows)):
        flat = tuple(chain.from_iterable(rows[start : start + size]))
        result = conn.exec_driver_sql(_values_sql(conn.dialect, size, returning), flat)
        if returning:
            created += result.all()
        start += size
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
