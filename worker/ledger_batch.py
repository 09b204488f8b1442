"""Ledger rows built straight into the form the database binds, and their multi-row insert.

The sweep writes a couple of ledger rows per vehicle, so their cost per row counts as much as
the database's: rows are tuples in COLUMNS order, the per-campaign parts are worked out once
per batch, each match's facts are encoded once for all its steps, and the few datetimes of a
batch are converted once. The insert is ``INSERT … ON CONFLICT DO NOTHING RETURNING`` with
the rows as multi-row VALUES pages (SQLite ≥ 3.35, as SQLAlchemy's insertmanyvalues would send
them, without its per-row parameter processing, which cost more than the insert) or, on
PostgreSQL, as one array per column: one statement per batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect

from crm.models import Delivery, table
from rules.campaign import Campaign

D = table(Delivery)
KEY = ("campaign", "step", "subject_id", "occurrence")
PLAIN = ("customer_id", "vehicle_id", "channel", "template", "priority", "status", "attempts")
TIMES = ("due_at", "created_at", "updated_at")
COLUMNS = (*KEY, *PLAIN, "facts", *TIMES)  # the order of a row's values
PAGE = 1000  # rows per statement: 15,000 parameters, under SQLite's and PostgreSQL's limits
# Compact, and Chinese names as UTF-8 rather than \u escapes: a third of the bytes per row.
encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

Row = tuple[Any, ...]


class LedgerBatch:
    """The ledger rows of one batch of matches, all matched at ``matched_at`` on ``local_day``."""

    def __init__(self, dialect: Dialect, local_day: date, matched_at: datetime, now: datetime):
        self.dialect, self.local_day, self.matched_at = dialect, local_day, matched_at
        self.times = TimeBinder(dialect)
        self.now = self.times.bind(now)
        self.rows: list[Row] = []
        self.due_at: dict[tuple[str, int], datetime] = {}  # every row of a step is due at once
        self._steps: dict[str, list[Row]] = {}

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
        for cid, index, occurrence, channel, template, priority, due in steps:
            self.rows.append(
                (cid, index, subject, occurrence, customer_id, vehicle_id, channel, template,
                 priority, "pending", 0, text, due, now, now)
            )  # fmt: skip

    def insert(self, conn: Connection) -> list[tuple[int, datetime]]:
        """Insert the rows, skipping keys already there; (id, due_at) of the new rows only."""
        return [(new[0], self.due_at[new[1], new[2]]) for new in insert_rows(conn, self.rows)]

    def _prepare(self, campaign: Campaign) -> list[Row]:
        occurrence = campaign.occurrence(self.local_day)
        steps = []
        for step in campaign.steps:
            due = self.due_at[campaign.id, step.index] = self.matched_at + step.after
            steps.append(
                (campaign.id, step.index, occurrence, step.channel, step.template,
                 campaign.priority, self.times.bind(due))
            )  # fmt: skip
        return steps


def insert_rows(conn: Connection, rows: Sequence[Row]) -> list[Row]:
    """Insert ``rows`` (values in COLUMNS order, bound as they are); (id, *KEY) of new rows."""
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        # One array per column, unnested by the server: psycopg parses a statement's text for
        # its placeholders, and for thousands of them that took longer than the insert.
        columns = [list(column) for column in zip(*rows, strict=True)]
        return list(conn.exec_driver_sql(_unnest_sql(conn.dialect), tuple(columns)).all())
    created: list[Row] = []
    start = 0
    for size in _page_sizes(len(rows)):
        flat = tuple(value for row in rows[start : start + size] for value in row)
        created += conn.exec_driver_sql(_values_sql(conn.dialect, size), flat).all()
        start += size
    return created


def _page_sizes(count: int) -> list[int]:
    # Full pages, then the rest in powers of two: a dozen statement texts in all, so the
    # driver's cache of prepared statements (SQLite: 128, ~1 MB for a 1000-row statement)
    # is reused instead of filling up with one text per batch size.
    sizes = [PAGE] * (count // PAGE)
    rest = count % PAGE
    sizes += [1 << bit for bit in range(rest.bit_length() - 1, -1, -1) if rest >> bit & 1]
    return sizes


def _values_sql(dialect: Dialect, count: int) -> str:
    """The multi-row VALUES form (SQLite; any database with ON CONFLICT and RETURNING)."""
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    row = "(" + ", ".join([mark] * len(COLUMNS)) + ")"
    return _insert(dialect, f"VALUES {', '.join([row] * count)}")


def _unnest_sql(dialect: Dialect) -> str:
    """PostgreSQL: the rows as one array parameter per column."""
    arrays = ", ".join(f"%b::{D.c[name].type.compile(dialect)}[]" for name in COLUMNS)
    return _insert(dialect, f"SELECT * FROM unnest({arrays})")


def _insert(dialect: Dialect, rows: str) -> str:
    quote = dialect.identifier_preparer.quote
    return (
        f"INSERT INTO {quote(D.name)} ({', '.join(quote(c) for c in COLUMNS)}) {rows}"
        f" ON CONFLICT ({', '.join(quote(c) for c in KEY)}) DO NOTHING"
        f" RETURNING {', '.join(quote(c) for c in ('id', *KEY))}"
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
