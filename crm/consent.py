"""Per-channel consent: one row per (customer, channel), written through one upsert.

No row means the dealer's default, allowed. Every opt-out and opt-in (STOP by SMS, an
unsubscribe link, a "do not call" outcome, a provider telling us the number unsubscribed)
goes through ``set_consent`` so they all obey the same rule: the newest decision wins.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from crm.models import Consent, table

CS = table(Consent)
CHANNELS = ("sms", "email", "call")


def set_consent(
    conn: Connection,
    customer_id: int,
    channel: str,
    allowed: bool,
    source: str,
    now: datetime,
) -> bool:
    """Record the customer's choice for ``channel``; False if a newer decision is already there."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown consent channel {channel!r}; one of {', '.join(CHANNELS)}")
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(CS).values(
        customer_id=customer_id,
        channel=channel,
        allowed=allowed,
        source=source[:40],
        updated_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer_id", "channel"],
        set_={
            "allowed": stmt.excluded.allowed,
            "source": stmt.excluded.source,
            "updated_at": stmt.excluded.updated_at,
        },
        # A DMS re-import of last year's consent must not undo this morning's STOP.
        where=CS.c.updated_at <= stmt.excluded.updated_at,
    )
    # RETURNING, not rowcount: on PostgreSQL SQLAlchemy reported 1 for an upsert the WHERE skipped.
    return conn.execute(stmt.returning(CS.c.id)).first() is not None


def is_allowed(conn: Connection, customer_id: int, channel: str) -> bool:
    """Whether ``channel`` may reach the customer now (no row: allowed)."""
    allowed = conn.execute(
        select(CS.c.allowed).where(CS.c.customer_id == customer_id, CS.c.channel == channel)
    ).scalar()
    return allowed is not False
