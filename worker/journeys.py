"""Multi-step journeys: a later step's `unless:` is checked again, on fresh facts, when it is due.

The SMS went out a week ago; the call only makes sense if the customer has not booked since.
The facts stored with the row are those of the match, so they cannot answer that: the subject's
facts are derived anew as of the moment the step is due.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from crm.models import Vehicle, table
from crm.records import load_records
from rules.facts import derive
from worker.runtime import Runtime

V = table(Vehicle)


def cancel_reason(rt: Runtime, conn: Connection, row: dict[str, Any], now: datetime) -> str | None:
    """Why the row's step should no longer go out (its `unless:` holds now), or None."""
    campaign = rt.campaigns.get(row["campaign"])
    if campaign is None or row["step"] >= len(campaign.steps):
        return None
    step = campaign.steps[row["step"]]
    if step.unless is None:
        return None
    vehicle_id = row["vehicle_id"] or _primary_vehicle(conn, row["customer_id"])
    if vehicle_id is None:
        return None
    records = load_records(conn, vehicle_id, vehicle_id)
    if not records:
        return None
    facts = derive(
        records[0], now, tz=rt.settings.tz, holidays=rt.holidays, km_per_day=rt.settings.km_per_day
    )
    if step.unless.test(facts):
        return f"journey_cancelled: its `unless:` ({', '.join(sorted(step.unless.facts()))}) holds"
    return None


def _primary_vehicle(conn: Connection, customer_id: int) -> int | None:
    # Customer campaigns are evaluated on the owner's first vehicle; re-check on the same one.
    query = select(V.c.id).where(V.c.customer_id == customer_id).order_by(V.c.id).limit(1)
    return conn.execute(query).scalar()
