"""The deliveries ledger: one row per intended message, inserted at most once.

The unique key (campaign, step, subject, occurrence) is the whole duplicate defence: a sweep
run twice, a retried job or two workers racing all insert the same keys, and the database keeps
the first. Only the rows that were really new come back, so only they get a `deliver` job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from crm.models import Delivery, table
from rules.campaign import Campaign
from worker.ledger_batch import KEY, PLAIN, TIMES, TimeBinder, encode, insert_rows

D = table(Delivery)
DEFAULT_CALL_WINDOW = timedelta(days=2)
_IN_CHUNK = 5000  # ids per IN list: far below SQLite's 32,766 bound parameters


def plan(
    campaign: Campaign,
    record: Mapping[str, Any],
    facts: Mapping[str, Any],
    local_day: date,
    matched_at: datetime,
    now: datetime,
) -> list[dict[str, Any]]:
    """The ledger rows one match asks for: one per step, each due after its delay."""
    vehicle_campaign = campaign.subject == "vehicle"
    customer_id = record["customer_id"]
    subject_id = record["vehicle_id"] if vehicle_campaign else customer_id
    occurrence = campaign.occurrence(local_day)
    return [
        {
            "campaign": campaign.id,
            "step": step.index,
            "subject_id": subject_id,
            "occurrence": occurrence,
            "customer_id": customer_id,
            "vehicle_id": record["vehicle_id"] if vehicle_campaign else None,
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
        for step in campaign.steps
    ]


def insert(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, datetime]]:
    """Insert ``rows``, skipping keys already there; returns (id, due_at) of the new rows only.

    The sweep builds its rows with worker.ledger_batch directly; this takes `plan`'s dicts.
    """
    times = TimeBinder(conn.dialect)
    texts: dict[int, tuple[Any, str | None]] = {}  # by identity: the steps of a match share one
    values, due_at = [], {}
    for row in rows:
        key = tuple(row[name] for name in KEY)
        due_at[key] = row["due_at"]
        facts = row["facts"]
        if id(facts) not in texts:
            texts[id(facts)] = (facts, None if facts is None else encode(facts))
        bound = tuple(times.bind(row[name]) for name in TIMES)
        values.append((*key, *(row[name] for name in PLAIN), texts[id(facts)][1], *bound))
    return [(new[0], due_at[tuple(new[1:])]) for new in insert_rows(conn, values)]


def recently_matched(
    conn: Connection, campaign: Campaign, subject_ids: Iterable[int], local_day: date
) -> set[int]:
    """Subjects an `every:` campaign already reached within its period, as of ``local_day``."""
    found = recently_matched_many(conn, [(campaign, subject_ids)], local_day)
    return found.get(campaign.id, set())


def recently_matched_many(
    conn: Connection, wanted: Sequence[tuple[Campaign, Iterable[int]]], local_day: date
) -> dict[str, set[int]]:
    """Per `every:` campaign id, which of its subjects it reached within its period.

    One query per batch for all the campaigns, not one each: rows come back for the longest
    period, and each campaign keeps those within its own.
    """
    subjects = {c.id: set(ids) for c, ids in wanted if c.every_days is not None}
    if not subjects:
        return {}
    since = {
        c.id: (local_day - timedelta(days=c.every_days - 1)).isoformat()
        for c, _ in wanted
        if c.every_days is not None
    }
    everyone = sorted(set().union(*subjects.values()))
    found: dict[str, set[int]] = {campaign_id: set() for campaign_id in subjects}
    for start in range(0, len(everyone), _IN_CHUNK):
        query = select(D.c.campaign, D.c.subject_id, D.c.occurrence).where(
            D.c.campaign.in_(list(subjects)),
            D.c.step == 0,
            D.c.occurrence >= min(since.values()),
            D.c.occurrence < local_day.isoformat(),
            D.c.subject_id.in_(everyone[start : start + _IN_CHUNK]),
        )
        for campaign_id, subject_id, occurrence in conn.execute(query):
            if occurrence >= since[campaign_id] and subject_id in subjects[campaign_id]:
                found[campaign_id].add(subject_id)
    return found


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
