"""Events from the dealer's systems: update the data, then evaluate that customer at once.

An event carries the same columns as its import file (docs/import.md) and is validated by the
same code, so a bad event is refused with the same clear reasons as a bad CSV row, and nothing
of it is applied. The 24-hour thank-you and the sales manager's call must not wait for
tomorrow's sweep: after the data changes, every vehicle of the customer is evaluated now.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from crm.csvspec import BY_NAME
from crm.importer import context
from crm.loader import FileLoader, Rejected
from crm.models import Customer, Vehicle, table
from worker.runtime import Runtime

C, V = table(Customer), table(Vehicle)

# event name -> (import file it updates, columns the event itself sets)
EVENTS: dict[str, tuple[str, dict[str, str]]] = {
    "vehicle.delivered": ("vehicles", {}),
    "visit.closed": ("service_visits", {}),
    "appointment.booked": ("appointments", {"status": "booked"}),
    "appointment.cancelled": ("appointments", {"status": "cancelled"}),
    "appointment.done": ("appointments", {"status": "done"}),
    "complaint.opened": ("complaints", {}),
    "complaint.closed": ("complaints", {}),
    "consent.changed": ("consents", {}),
    "customer.updated": ("customers", {}),
}


class EventError(ValueError):
    """The event was refused; nothing of it was applied."""


@dataclass(frozen=True)
class Applied:
    """What an accepted event did: the customer it touched and the new ledger rows due now."""

    customer_id: int
    due: list[int]


def apply(rt: Runtime, name: str, data: Mapping[str, Any], now: datetime | None = None) -> Applied:
    """Validate and store one event, then evaluate its customer's vehicles as of ``now``."""
    if name not in EVENTS:
        raise EventError(f"unknown event {name!r}; one of {', '.join(EVENTS)}")
    entity_name, fixed = EVENTS[name]
    entity = BY_NAME[entity_name]
    row = {str(k): "" if v is None else str(v) for k, v in {**data, **fixed}.items()}
    now = now or datetime.now(UTC)
    ctx = context(rt.settings.timezone, rt.settings.phone_region)
    with rt.engine.begin() as conn:
        loader = FileLoader(conn, entity, ctx, now)
        try:
            loader.run(csv.reader(_as_csv(row)))
        except Rejected as exc:
            raise EventError(f"{name}: {exc.message}") from None
        if loader.errors:
            conn.rollback()
            raise EventError(f"{name}: {loader.errors[0][1]}")
        customer_id = _customer(conn, row)
    if customer_id is None:
        raise EventError(f"{name}: names no customer or vehicle Milepost knows")
    return Applied(customer_id, evaluate_customer(rt, customer_id, now))


def evaluate_customer(rt: Runtime, customer_id: int, now: datetime) -> list[int]:
    """Evaluate every vehicle of the customer now; the ids of the new ledger rows due now."""
    from worker.sweep import evaluate_range

    with rt.engine.connect() as conn:
        vehicles = conn.execute(select(V.c.id).where(V.c.customer_id == customer_id)).scalars()
        ids = sorted(vehicles)
    due: list[int] = []
    for vehicle_id in ids:
        due += evaluate_range(rt, vehicle_id, vehicle_id, now.isoformat(), now)
    return due


def _as_csv(row: Mapping[str, str]) -> io.StringIO:
    # The loader reads CSV (it reports csv line numbers): hand it the event as a one-row file.
    text = io.StringIO()
    csv.writer(text).writerows([list(row), list(row.values())])
    text.seek(0)
    return text


def _customer(conn: Connection, row: Mapping[str, str]) -> int | None:
    if row.get("vin"):
        query = select(V.c.customer_id).where(V.c.vin == row["vin"].strip().upper())
    else:
        code = row.get("customer_code") or row.get("code") or ""
        query = select(C.c.id).where(C.c.code == code.strip())
    return conn.execute(query).scalar()


def dispatch(rt: Runtime, due: list[int]) -> None:
    """Hand the due rows to the workers, or deliver them here when there is no broker."""
    from worker import actors
    from worker.broker import is_inprocess
    from worker.deliver import deliver
    from worker.sweep import enqueue_all

    if is_inprocess(actors.broker):
        for delivery_id in due:  # a throttled row stays due: the next sweep or tick sends it
            deliver(rt, delivery_id)
    else:
        enqueue_all(actors.broker, actors.deliver_jobs(due))
