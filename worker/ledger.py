"""The deliveries ledger: one row per intended message, inserted at most once.

The unique key (campaign, step, subject, occurrence) is the whole duplicate defence: a sweep
run twice, a retried job or two workers racing all insert the same keys, and the database keeps
the first. Only the rows that were really new come back, so only they get a `deliver` job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from crm.models import Delivery, table
from crm.upsert import insert_ignore
from rules.campaign import Campaign

D = table(Delivery)
KEY = ["campaign", "step", "subject_id", "occurrence"]
DEFAULT_CALL_WINDOW = timedelta(days=2)


def plan(
    campaign: Campaign,
    record: dict[str, Any],
    facts: dict[str, Any],
    local_day: date,
    matched_at: datetime,
    now: datetime,
) -> list[dict[str, Any]]:
    """The ledger rows one match asks for: one per step, each due after its delay."""
    subject_id = record["vehicle_id"] if campaign.subject == "vehicle" else record["customer_id"]
    occurrence = campaign.occurrence(local_day)
    rows = []
    for step in campaign.steps:
        rows.append(
            {
                "campaign": campaign.id,
                "step": step.index,
                "subject_id": subject_id,
                "occurrence": occurrence,
                "customer_id": record["customer_id"],
                "vehicle_id": record["vehicle_id"] if campaign.subject == "vehicle" else None,
                "channel": step.channel,
                "template": step.template,
                "priority": campaign.priority,
                "due_at": matched_at + step.after,
                "status": "pending",
                "attempts": 0,
                "facts": facts,
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows


def insert(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[tuple[int, datetime]]:
    """Insert ``rows``, skipping keys already there; returns (id, due_at) of the new rows only."""
    if not rows:
        return []
    stmt = insert_ignore(conn, Delivery, KEY).returning(D.c.id, D.c.due_at)
    return [(row.id, row.due_at) for row in conn.execute(stmt, list(rows))]


def recently_matched(
    conn: Connection, campaign: Campaign, subject_ids: Iterable[int], local_day: date
) -> set[int]:
    """Subjects an `every:` campaign already reached within its period, as of ``local_day``."""
    if campaign.every_days is None:
        return set()
    since = (local_day - timedelta(days=campaign.every_days - 1)).isoformat()
    query = select(D.c.subject_id).where(
        D.c.campaign == campaign.id,
        D.c.step == 0,
        D.c.occurrence >= since,
        D.c.occurrence < local_day.isoformat(),
        D.c.subject_id.in_(list(subject_ids)),
    )
    return set(conn.execute(query).scalars())


def due_ids(
    conn: Connection, now: datetime, quiet_for: timedelta, limit: int = 10_000
) -> list[int]:
    """Rows waiting to be (re)queued: pending, retry or deferred, due, and untouched a while.

    ``quiet_for`` keeps a tick from requeueing rows a job was queued for moments ago; the claim
    makes a second job for the same row harmless anyway.
    """
    query = (
        select(D.c.id)
        .where(
            D.c.status.in_(("pending", "retry", "deferred")),
            D.c.due_at <= now,
            D.c.updated_at <= now - quiet_for,
        )
        .order_by(D.c.priority.desc(), D.c.due_at)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def mark_stale_unknown(conn: Connection, now: datetime, older_than: timedelta) -> int:
    """Rows left `sending` by a dead worker become `unknown`: never resent automatically."""
    result = conn.execute(
        D.update()
        .where(D.c.status == "sending", D.c.updated_at <= now - older_than)
        .values(
            status="unknown",
            reason="worker stopped mid-send; check before releasing",
            updated_at=now,
        )
    )
    return int(result.rowcount)


def release_unknown(conn: Connection, ids: Sequence[int], now: datetime) -> int:
    """An operator's deliberate decision to send `unknown` rows again."""
    result = conn.execute(
        D.update()
        .where(D.c.id.in_(list(ids)), D.c.status == "unknown")
        .values(status="pending", reason="released by an operator", due_at=now, updated_at=now)
    )
    return int(result.rowcount)
