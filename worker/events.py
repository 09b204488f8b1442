"""Events from the dealer's systems: update the data, then evaluate that customer at once.

An event carries the same columns as its import file (docs/import.md) and is validated by the
same code, so a bad event is refused with the same clear reasons as a bad CSV row, and nothing
of it is applied. The 24-hour thank-you and the sales manager's call must not wait for
tomorrow's sweep: after the data changes, every vehicle of the customer is evaluated now.

``odometer.read`` has no import file: a reading taken outside a visit (vin, day, odometer_km)
is stored with the visits as kind ``reading``, checked like them (odometers never go down), and
counts for mileage but not as a visit.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, select

from crm import fields as f
from crm.csvspec import BY_NAME, VEHICLE, Entity, Field, vin_ref
from crm.importer import context
from crm.loader import FileLoader, Rejected
from crm.models import READING, Customer, ServiceVisit, Vehicle, table
from worker.runtime import Runtime

C, V = table(Customer), table(Vehicle)


def _read_on(value: str, ctx: f.Context) -> date:
    """The day of a reading: a date, or a date and time (its day in the dealer's zone)."""
    try:
        return f.day(value, ctx)
    except f.BadValue:
        pass
    try:
        return f.moment(value, ctx).astimezone(ctx.tz).date()
    except f.BadValue:
        raise f.BadValue(
            "must be a date like 2024-03-31, or a date and time like 2024-03-31 14:30"
        ) from None


READINGS = Entity(
    "odometer_readings",
    table(ServiceVisit),
    (
        vin_ref,
        Field("day", _read_on, "when it was read: YYYY-MM-DD, or a date and time", True),
        Field("odometer_km", f.integer(0, 3_000_000), "never lower than an earlier one", True),
        Field("kind", f.choice(READING), "set by the event", True),
        Field("order_no", f.text(40), "set by the event: one reading a vehicle a day", True),
    ),
    key=("order_no",),
    refs=(VEHICLE,),
)

# event name -> (what it updates: an import file's entity, columns the event itself sets)
EVENTS: dict[str, tuple[Entity, dict[str, str]]] = {
    "vehicle.delivered": (BY_NAME["vehicles"], {}),
    "visit.closed": (BY_NAME["service_visits"], {}),
    "odometer.read": (READINGS, {"kind": READING}),
    "appointment.booked": (BY_NAME["appointments"], {"status": "booked"}),
    "appointment.cancelled": (BY_NAME["appointments"], {"status": "cancelled"}),
    "appointment.done": (BY_NAME["appointments"], {"status": "done"}),
    "complaint.opened": (BY_NAME["complaints"], {}),
    "complaint.closed": (BY_NAME["complaints"], {}),
    "consent.changed": (BY_NAME["consents"], {}),
    "customer.updated": (BY_NAME["customers"], {}),
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
    entity, fixed = EVENTS[name]
    row = {str(k): "" if v is None else str(v) for k, v in {**data, **fixed}.items()}
    now = now or datetime.now(UTC)
    ctx = context(rt.settings.timezone, rt.settings.phone_region)
    if entity is READINGS:
        row["order_no"] = _reading_key(row, ctx)
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


def _reading_key(row: Mapping[str, str], ctx: f.Context) -> str:
    # A reading's natural key: one a vehicle a day, so a resent or corrected reading replaces
    # that day's. It shares the visits' order numbers, which never look like this.
    try:
        vin, day = f.vin(row.get("vin", "").strip(), ctx), _read_on(row.get("day", "").strip(), ctx)
    except f.BadValue:
        return "odometer"  # the loader refuses the row, naming the bad VIN or day
    return f"odometer {vin} {day}"


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
