"""Read one flat record per vehicle (the input of rules.facts.derive), a range of ids at a time.

A batch costs a fixed handful of queries, whatever its size: vehicles with their owners, then
aggregates over visits, appointments, complaints and consents for the same id range. Nothing
is loaded for the whole fleet at once, so memory stays flat in the number of vehicles.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, case, func, select

from crm.models import (
    Appointment,
    Complaint,
    Consent,
    Customer,
    Membership,
    ServiceVisit,
    Vehicle,
    table,
)

V, C, M, SV = table(Vehicle), table(Customer), table(Membership), table(ServiceVisit)
A, CP, CS = table(Appointment), table(Complaint), table(Consent)


def id_ranges(conn: Connection, batch: int) -> list[tuple[int, int]]:
    """Inclusive vehicle-id ranges of at most ``batch`` ids that cover every vehicle."""
    lo, hi = conn.execute(select(func.min(V.c.id), func.max(V.c.id))).one()
    if lo is None:
        return []
    return [(start, min(start + batch - 1, hi)) for start in range(lo, hi + 1, batch)]


def _vehicles(conn: Connection, lo: int, hi: int) -> list[dict[str, Any]]:
    # The owner's lowest vehicle id carries the customer campaigns, so they run once per owner.
    owned = V.alias("owned")
    first_vehicle = (
        select(func.min(owned.c.id)).where(owned.c.customer_id == C.c.id).scalar_subquery()
    )
    query = (
        select(
            V.c.id.label("vehicle_id"),
            V.c.customer_id,
            (V.c.id == first_vehicle).label("is_primary"),
            V.c.vin,
            V.c.make,
            V.c.model,
            V.c.year.label("model_year"),
            V.c.delivered_at,
            V.c.warranty_months,
            V.c.warranty_km,
            V.c.insurance_expiry,
            V.c.inspection_due,
            C.c.name,
            C.c.title,
            C.c.birthday,
            C.c.language,
            C.c.segment,
            C.c.timezone,
            func.coalesce(M.c.tier, "none").label("tier"),
            func.coalesce(M.c.points_cumulative, 0).label("points_cumulative"),
            func.coalesce(M.c.points_redeemable, 0).label("points_redeemable"),
            M.c.joined.label("membership_joined"),
            M.c.expires.label("membership_expires"),
        )
        .join(C, C.c.id == V.c.customer_id)
        .outerjoin(M, M.c.customer_id == C.c.id)
        .where(V.c.id.between(lo, hi))
        .order_by(V.c.id)
    )
    return [dict(row) for row in conn.execute(query).mappings()]


def _visit_stats(conn: Connection, lo: int, hi: int) -> dict[int, dict[str, Any]]:
    # Odometers never decrease (the importer enforces it), so min/max are first/last readings.
    query = (
        select(
            SV.c.vehicle_id,
            func.count().label("visits"),
            func.min(SV.c.day).label("first_visit_day"),
            func.min(SV.c.odometer_km).label("first_visit_km"),
            func.max(SV.c.day).label("last_visit_day"),
            func.max(SV.c.odometer_km).label("last_visit_km"),
            func.max(case((SV.c.kind == "first", SV.c.day))).label("first_service_day"),
            func.max(case((SV.c.kind == "repair", SV.c.day))).label("last_repair_day"),
        )
        .where(SV.c.vehicle_id.between(lo, hi))
        .group_by(SV.c.vehicle_id)
    )
    stats = {row.vehicle_id: dict(row._mapping) for row in conn.execute(query)}
    latest = (
        select(SV.c.vehicle_id, SV.c.declined_items)
        .where(SV.c.vehicle_id.between(lo, hi))
        .order_by(SV.c.vehicle_id, SV.c.day)
    )
    for vehicle_id, declined in conn.execute(latest):
        stats[vehicle_id]["last_declined_items"] = declined  # the last row per vehicle wins
    return stats


def _customer_stats(conn: Connection, lo: int, hi: int) -> dict[int, dict[str, Any]]:
    owners = select(V.c.customer_id).where(V.c.id.between(lo, hi)).distinct()
    stats: dict[int, dict[str, Any]] = {}

    def put(cid: int, **values: Any) -> None:
        stats.setdefault(cid, {}).update(values)

    visits = (
        select(
            V.c.customer_id,
            func.max(SV.c.day),
            func.max(case((SV.c.kind == "repair", SV.c.amount), else_=0.0)),
        )
        .join(SV, SV.c.vehicle_id == V.c.id)
        .where(V.c.customer_id.in_(owners))
        .group_by(V.c.customer_id)
    )
    for cid, last_day, max_repair in conn.execute(visits):
        put(cid, customer_last_visit_day=last_day, max_repair_amount=float(max_repair or 0))
    scores = (
        select(V.c.customer_id, SV.c.satisfaction)
        .join(SV, SV.c.vehicle_id == V.c.id)
        .where(V.c.customer_id.in_(owners), SV.c.satisfaction.is_not(None))
        .order_by(V.c.customer_id, SV.c.day)
    )
    for cid, score in conn.execute(scores):
        put(cid, last_satisfaction=score)
    complaints = (
        select(
            CP.c.customer_id,
            func.sum(case((CP.c.closed.is_(None), 1), else_=0)),
            func.max(CP.c.closed),
        )
        .where(CP.c.customer_id.in_(owners))
        .group_by(CP.c.customer_id)
    )
    for cid, open_count, last_closed in conn.execute(complaints):
        put(cid, open_complaints=int(open_count or 0), last_complaint_closed=last_closed)
    consents = select(CS.c.customer_id, CS.c.channel, CS.c.allowed).where(
        CS.c.customer_id.in_(owners)
    )
    for cid, channel, allowed in conn.execute(consents):
        put(cid, **{f"consent_{channel}": bool(allowed)})
    return stats


def _appointments(conn: Connection, lo: int, hi: int) -> dict[int, Any]:
    query = (
        select(A.c.vehicle_id, func.max(A.c.at))
        .where(A.c.vehicle_id.between(lo, hi), A.c.status == "booked")
        .group_by(A.c.vehicle_id)
    )
    return {vehicle_id: at for vehicle_id, at in conn.execute(query)}


_VISIT_DEFAULTS = {
    "visits": 0,
    "first_visit_day": None,
    "first_visit_km": None,
    "last_visit_day": None,
    "last_visit_km": None,
    "first_service_day": None,
    "last_repair_day": None,
    "last_declined_items": 0,
}
_CUSTOMER_DEFAULTS = {
    "customer_last_visit_day": None,
    "max_repair_amount": 0.0,
    "last_satisfaction": None,
    "open_complaints": 0,
    "last_complaint_closed": None,
    "consent_sms": True,
    "consent_email": True,
    "consent_call": True,
}


def load_records(conn: Connection, lo: int, hi: int) -> list[dict[str, Any]]:
    """The records of the vehicles with ids in ``lo..hi``, in id order."""
    rows = _vehicles(conn, lo, hi)
    if not rows:
        return []
    visits = _visit_stats(conn, lo, hi)
    customers = _customer_stats(conn, lo, hi)
    booked = _appointments(conn, lo, hi)
    for row in rows:
        row.update(_VISIT_DEFAULTS)
        row.update(visits.get(row["vehicle_id"], ()))
        row.update(_CUSTOMER_DEFAULTS)
        row.update(customers.get(row["customer_id"], ()))
        row["next_appointment_at"] = booked.get(row["vehicle_id"])
        row["is_primary"] = bool(row["is_primary"])
    return rows


def iter_records(conn: Connection, batch: int) -> Iterator[dict[str, Any]]:
    """Every vehicle's record, streamed a batch at a time."""
    for lo, hi in id_ranges(conn, batch):
        yield from load_records(conn, lo, hi)
