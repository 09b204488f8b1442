"""The deliveries ledger: one row per intended message, inserted at most once.

The unique key (campaign, step, subject, occurrence) is the whole duplicate defence: a sweep
run twice, a retried job or two workers racing all insert the same keys, and the database keeps
the first. Only the rows that were really new come back, so only they get a `deliver` job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Integer,
    String,
    and_,
    bindparam,
    func,
    select,
    union_all,
)

from crm.models import Delivery, Vehicle, table
from rules.campaign import Campaign
from worker.ledger_batch import KEY, PLAIN, TIMES, TimeBinder, encode, insert_rows

D, V = table(Delivery), table(Vehicle)
DEFAULT_CALL_WINDOW = timedelta(days=2)
_IN_CHUNK = 4096  # ids per IN list: far below SQLite's 32,766 bound parameters


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
    if campaign.every_days is None:
        return set()
    wanted, found = sorted(set(subject_ids)), set[int]()
    since = _since(campaign, local_day)
    for start in range(0, len(wanted), _IN_CHUNK):
        query = select(D.c.subject_id).where(
            D.c.campaign == campaign.id,
            D.c.step == 0,
            D.c.occurrence >= since,
            D.c.occurrence < local_day.isoformat(),
            D.c.subject_id.in_(_padded(wanted[start : start + _IN_CHUNK])),
        )
        found.update(conn.execute(query).scalars())
    return found


def in_ledger_in_range(
    conn: Connection,
    matches: Iterable[tuple[Campaign, Iterable[int]]],
    lo: int,
    hi: int,
    local_day: date,
) -> dict[str, set[int]]:
    """Per campaign id, the subjects among its ``matches`` in vehicles lo..hi that are done.

    Done: their row for today's occurrence is there (`once`, a year, a month, a day: a match
    from an earlier sweep), or for `every:` campaigns a row within the period. The subjects
    are vehicles lo..hi, or their owners for customer campaigns. Without this the next
    morning's sweep would send every standing match back to the database for ON CONFLICT to
    turn down: as much work as inserting them. One query a batch whatever its matches.
    """
    matches = list(matches)
    bounds = {c.id: _occurrences(c, local_day) for c, _ in matches}
    if not bounds:
        return {}
    vehicle = sorted(c.id for c, _ in matches if c.subject == "vehicle")
    params: dict[str, Any] = {"vehicle_campaigns": _padded(vehicle), "lo": lo, "hi": hi}
    dialect = conn.dialect.name
    if dialect == "postgresql":  # the customer campaigns' matches, as (campaign, customer) pairs
        pairs = [(c.id, s) for c, subjects in matches if c.subject != "vehicle" for s in subjects]
        params["pair_campaigns"] = [campaign for campaign, _ in pairs]
        params["pair_subjects"] = [subject for _, subject in pairs]
    else:
        customer = sorted(c.id for c, _ in matches if c.subject != "vehicle")
        params["customer_campaigns"] = _padded(customer)
    found: dict[str, set[int]] = {campaign_id: set() for campaign_id in bounds}
    for campaign_id, subject_id, occurrence in conn.execute(_in_range(dialect), params):
        low, high = bounds[campaign_id]
        if low <= occurrence <= high:
            found[campaign_id].add(subject_id)
    return found


def _occurrences(campaign: Campaign, local_day: date) -> tuple[str, str]:
    """The occurrence keys, lowest and highest, that a match on ``local_day`` would repeat."""
    today = campaign.occurrence(local_day)
    return (_since(campaign, local_day), today) if campaign.every_days else (today, today)


def _since(campaign: Campaign, local_day: date) -> str:
    return (local_day - timedelta(days=(campaign.every_days or 1) - 1)).isoformat()


@cache
def _in_range(dialect: str) -> Any:
    # Built once, bound per batch; the unique key's index (campaign, step, subject_id,
    # occurrence) answers every part. Vehicle subjects are an index range. Customers: SQLite
    # probes each customer campaign for each owner of the range; PostgreSQL, given the owners
    # as a subquery or an array, scanned every customer campaign's rows in the ledger (a cost
    # that grew with it) or probed each pair: it gets just the pairs that matched.
    in_range = bindparam("lo", type_=Integer), bindparam("hi", type_=Integer)
    vehicles = select(D.c.campaign, D.c.subject_id, D.c.occurrence).where(
        D.c.step == 0,
        D.c.campaign.in_(bindparam("vehicle_campaigns", expanding=True)),
        D.c.subject_id.between(*in_range),
    )
    if dialect == "postgresql":
        pairs = (
            func.unnest(
                bindparam("pair_campaigns", type_=ARRAY(String)),
                bindparam("pair_subjects", type_=ARRAY(Integer)),
            )
            .table_valued("campaign", "subject_id")
            .render_derived(name="pairs")
        )
        customers = select(D.c.campaign, D.c.subject_id, D.c.occurrence).join_from(
            pairs,
            D,
            and_(
                D.c.campaign == pairs.c.campaign,
                D.c.step == 0,
                D.c.subject_id == pairs.c.subject_id,
            ),
        )
    else:
        owners = select(V.c.customer_id).where(V.c.id.between(*in_range)).distinct()
        customers = select(D.c.campaign, D.c.subject_id, D.c.occurrence).where(
            D.c.step == 0,
            D.c.campaign.in_(bindparam("customer_campaigns", expanding=True)),
            D.c.subject_id.in_(owners),
        )
    return union_all(vehicles, customers)


def _padded(values: list[Any]) -> list[Any]:
    # To a power of two, repeating the last one: an IN list of every length would be a new
    # statement text each batch, and SQLite keeps 128 of them prepared, a few MB that grow.
    return values + values[-1:] * ((1 << (len(values) - 1).bit_length()) - len(values))


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
            # It may have reached the customer when its send began: it counts for the caps.
            sent_at=func.coalesce(D.c.sent_at, D.c.updated_at),
            updated_at=now,
        )
    )
    return int(result.rowcount)


def release_unknown(conn: Connection, ids: Sequence[int], now: datetime) -> int:
    """An operator's deliberate decision to send `unknown` rows again, at the scheduler's next tick.

    Due a second after the release: a row that became due after it was last touched is one the
    scheduler's tick queues at once (worker.scheduler.take_due), busy broker or not.
    """
    result = conn.execute(
        D.update()
        .where(D.c.id.in_(list(ids)), D.c.status == "unknown")
        .values(
            status="pending",
            reason="released by an operator",
            due_at=now + timedelta(seconds=1),
            updated_at=now,
        )
    )
    return int(result.rowcount)
