"""The ledger statements one delivery runs: read, claim (or settle), record. Built once, at import.

A delivery is the hot path of every worker thread. Statements built per call cost ~250 µs of
CPU each in SQLAlchemy (construction, cache key); these are built once with bind parameters,
so each execution only looks up its compiled form. One read returns the row with everything
the send-time policies need (address, time zone, consent, the messages competing for the
frequency cap); a message that goes out then costs two writes: its claim and its outcome.

Claim, then act: the claim is an UPDATE conditional on the row being exactly as it was read
(status and updated_at), so of any number of jobs that read the same row one wins; the others
change nothing and stop. (Why not UPDATE … RETURNING with the customer's columns: SQLAlchemy
renders RETURNING unqualified on SQLite, and a correlated subquery there reads its own table.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, select, update

from crm.models import Consent, Customer, Delivery, table
from worker.policies import CAPPED_CHANNELS, competing

D, C, CS = table(Delivery), table(Customer), table(Consent)
CLAIMABLE = ("pending", "retry", "deferred")

_READ = (
    select(
        *D.c,
        C.c.phone,
        C.c.email,
        C.c.timezone,
        select(CS.c.allowed)
        .where(CS.c.customer_id == D.c.customer_id, CS.c.channel == D.c.channel)
        .scalar_subquery()
        .label("consent"),
        # Counted in the same statement: no second round trip, and the same snapshot.
        case(
            *[(D.c.channel == channel, competing(channel)) for channel in CAPPED_CHANNELS],
            else_=0,
        ).label("competing"),
    )
    .join_from(D, C, C.c.id == D.c.customer_id)
    .where(D.c.id == bindparam("delivery_id"))
)

# The row as it was read: nobody claimed, sent or rescheduled it since.
_unchanged = (
    D.c.id == bindparam("delivery_id"),
    D.c.status == bindparam("was_status"),
    D.c.updated_at == bindparam("was_updated_at"),
)

_SETTLE = (
    update(D)
    .where(*_unchanged)
    .values(
        status=bindparam("status"),
        reason=bindparam("reason"),
        due_at=func.coalesce(bindparam("due_at", type_=D.c.due_at.type), D.c.due_at),
        updated_at=bindparam("now"),
    )
)

# One statement for every outcome, so it compiles once: a NULL leaves due_at and sent_at as
# they were, and `tried` is 1 when the provider was asked.
_RECORD = (
    update(D)
    .where(D.c.id == bindparam("delivery_id"))
    .values(
        status=bindparam("status"),
        reason=bindparam("reason"),
        error_code=bindparam("error_code"),
        provider_id=bindparam("provider_id"),
        segments=bindparam("segments"),
        attempts=D.c.attempts + bindparam("tried"),
        due_at=func.coalesce(bindparam("due_at", type_=D.c.due_at.type), D.c.due_at),
        sent_at=func.coalesce(bindparam("sent_at", type_=D.c.sent_at.type), D.c.sent_at),
        updated_at=bindparam("now"),
    )
)


def read(
    conn: Connection, delivery_id: int, now: datetime, competing: dict[str, Any]
) -> dict[str, Any] | None:
    """The row if it is claimable and due, with its customer's columns; else None.

    ``competing`` holds the parameters of the cap count (policies.competing_params).
    """
    params = {**competing, "delivery_id": delivery_id, "now": now}
    found = conn.execute(_READ, params).mappings().first()
    if found is None or found["status"] not in CLAIMABLE or found["due_at"] > now:
        return None
    return dict(found)


def claim(conn: Connection, row: dict[str, Any], now: datetime) -> bool:
    """Move the row read to `sending`; False if another job changed it first."""
    return settle(conn, row, now, "sending")


def settle(
    conn: Connection,
    row: dict[str, Any],
    now: datetime,
    status: str,
    reason: str | None = None,
    due_at: datetime | None = None,
) -> bool:
    """Move the row read to ``status`` (sending, suppressed, deferred) if it is unchanged."""
    params = {
        "delivery_id": row["id"],
        "was_status": row["status"],
        "was_updated_at": row["updated_at"],
        "status": status,
        "reason": reason[:200] if reason else None,
        "due_at": due_at,
        "now": now,
    }
    return conn.execute(_SETTLE, params).rowcount == 1


def record(
    conn: Connection,
    delivery_id: int,
    now: datetime,
    status: str,
    *,
    reason: str | None = None,
    error_code: str | None = None,
    provider_id: str | None = None,
    segments: int | None = None,
    tried: bool = False,
    due_at: datetime | None = None,
    sent_at: datetime | None = None,
) -> None:
    """The claimed row's outcome; ``reason`` is cut to the column's 200 characters."""
    conn.execute(
        _RECORD,
        {
            "delivery_id": delivery_id,
            "now": now,
            "status": status,
            "reason": reason[:200] if reason else None,
            "error_code": error_code[:40] if error_code else None,
            "provider_id": provider_id,
            "segments": segments,
            "tried": int(tried),
            "due_at": due_at,
            "sent_at": sent_at,
        },
    )
