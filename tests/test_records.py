"""Records read a batch at a time mean exactly what a vehicle-by-vehicle reading says, on both
databases: the batched queries are checked against a naive reference over the raw tables."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, func, insert, select

from crm.demo import generate
from crm.models import (
    READING,
    Appointment,
    Complaint,
    Consent,
    Customer,
    Membership,
    ServiceVisit,
    Vehicle,
    table,
)
from crm.records import id_ranges, iter_records, load_records

DAY = date(2026, 11, 23)


def reference(conn: Connection) -> list[dict[str, Any]]:
    """Every vehicle's record, worked out one vehicle at a time from whole tables."""

    def rows(model: Any) -> list[Any]:
        t = table(model)
        return list(conn.execute(select(t).order_by(t.c.id)))

    customers = {c.id: c for c in rows(Customer)}
    memberships = {m.customer_id: m for m in rows(Membership)}
    vehicles = rows(Vehicle)
    fleets: dict[int, list[int]] = defaultdict(list)
    for v in vehicles:
        fleets[v.customer_id].append(v.id)
    readings: dict[int, list[Any]] = defaultdict(list)  # visits and stand-alone readings
    for sv in sorted(rows(ServiceVisit), key=lambda sv: (sv.day, sv.id)):
        readings[sv.vehicle_id].append(sv)
    visits = {vid: [sv for sv in rs if sv.kind != READING] for vid, rs in readings.items()}
    booked: dict[int, list[Any]] = defaultdict(list)
    for a in rows(Appointment):
        if a.status == "booked":
            booked[a.vehicle_id].append(a.at)
    complaints: dict[int, list[Any]] = defaultdict(list)
    for cp in rows(Complaint):
        complaints[cp.customer_id].append(cp)
    consents = {(cs.customer_id, cs.channel): cs.allowed for cs in rows(Consent)}

    out = []
    for v in vehicles:
        mine, c, m = visits.get(v.id, []), customers[v.customer_id], memberships.get(v.customer_id)
        read = readings[v.id]
        owned = sorted(
            (sv for vid in fleets[c.id] for sv in visits.get(vid, [])),
            key=lambda sv: (sv.day, sv.id),
        )
        scored = [sv.satisfaction for sv in owned if sv.satisfaction is not None]
        record = {
            "vehicle_id": v.id,
            "customer_id": c.id,
            "is_primary": v.id == min(fleets[c.id]),
            "vin": v.vin,
            "make": v.make,
            "model": v.model,
            "model_year": v.year,
            "delivered_at": v.delivered_at,
            "warranty_months": v.warranty_months,
            "warranty_km": v.warranty_km,
            "insurance_expiry": v.insurance_expiry,
            "inspection_due": v.inspection_due,
            "next_appointment_at": max(booked[v.id], default=None),
            "visits": len(mine),
            "first_reading_day": min((sv.day for sv in read), default=None),
            "first_reading_km": min((sv.odometer_km for sv in read), default=None),
            "last_reading_day": max((sv.day for sv in read), default=None),
            "last_reading_km": max((sv.odometer_km for sv in read), default=None),
            "last_visit_day": max((sv.day for sv in mine), default=None),
            "last_visit_km": max((sv.odometer_km for sv in mine), default=None),
            "first_service_day": max((sv.day for sv in mine if sv.kind == "first"), default=None),
            "last_repair_day": max((sv.day for sv in mine if sv.kind == "repair"), default=None),
            "last_declined_items": mine[-1].declined_items if mine else 0,
            "name": c.name,
            "title": c.title,
            "birthday": c.birthday,
            "language": c.language,
            "segment": c.segment,
            "timezone": c.timezone,
            "tier": m.tier if m else "none",
            "points_cumulative": m.points_cumulative if m else 0,
            "points_redeemable": m.points_redeemable if m else 0,
            "membership_joined": m.joined if m else None,
            "membership_expires": m.expires if m else None,
            "customer_last_visit_day": max((sv.day for sv in owned), default=None),
            "max_repair_amount": max(
                (sv.amount if sv.kind == "repair" else 0.0 for sv in owned), default=0.0
            ),
            "last_satisfaction": scored[-1] if scored else None,
            "open_complaints": sum(cp.closed is None for cp in complaints[c.id]),
            "last_complaint_closed": max(
                (cp.closed for cp in complaints[c.id] if cp.closed), default=None
            ),
        }
        for channel in ("sms", "email", "call"):
            record[f"consent_{channel}"] = consents.get((c.id, channel), True)
        out.append(record)
    return out


def add_readings(conn: Connection) -> None:
    """Odometer readings outside a visit: after the last visit of some cars, alone on others."""
    sv, v = table(ServiceVisit), table(Vehicle)
    last = (
        select(sv.c.vehicle_id, func.max(sv.c.day), func.max(sv.c.odometer_km))
        .group_by(sv.c.vehicle_id)
        .limit(40)
    )
    rows = [
        {"order_no": f"odometer {vid}", "vehicle_id": vid, "day": day + timedelta(days=20),
         "odometer_km": km + 900, "kind": READING}
        for vid, day, km in conn.execute(last)
    ]  # fmt: skip
    unvisited = select(v.c.id).where(v.c.id.not_in(select(sv.c.vehicle_id))).limit(10)
    rows += [
        {"order_no": f"odometer {vid}", "vehicle_id": vid, "day": DAY, "odometer_km": 1500,
         "kind": READING}
        for vid in conn.execute(unvisited).scalars()
    ]  # fmt: skip
    start = conn.execute(select(func.max(sv.c.id))).scalar_one()  # the demo sets ids itself
    conn.execute(insert(sv), [{"id": start + n, **row} for n, row in enumerate(rows, 1)])


def check_against_reference(url: str) -> None:
    generate(url, customers=400, seed=13, today=DAY)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            add_readings(conn)
        with engine.connect() as conn:
            expected = reference(conn)
            batched = [r for lo, hi in id_ranges(conn, 97) for r in load_records(conn, lo, hi)]
            one_by_one = [
                r for v in expected for r in load_records(conn, v["vehicle_id"], v["vehicle_id"])
            ]
            streamed = list(iter_records(conn, 1000))
    finally:
        engine.dispose()
    assert len(expected) > 400
    assert any(r["visits"] > 1 for r in expected) and any(not r["is_primary"] for r in expected)
    assert any(not r["consent_sms"] for r in expected) and any(
        r["open_complaints"] for r in expected
    )
    assert any(r["next_appointment_at"] for r in expected)
    assert any(r["last_reading_day"] != r["last_visit_day"] for r in expected)
    assert any(r["last_reading_day"] and not r["visits"] for r in expected)
    assert batched == expected
    assert one_by_one == expected
    assert streamed == expected


def test_batched_records_match_a_vehicle_by_vehicle_reading_on_sqlite(db_url: str) -> None:
    check_against_reference(db_url)


@pytest.mark.postgres
def test_batched_records_match_a_vehicle_by_vehicle_reading_on_postgresql(pg_url: str) -> None:
    check_against_reference(pg_url)


def test_an_empty_range_has_no_records(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert load_records(conn, 1, 1000) == []
        assert id_ranges(conn, 100) == []
    engine.dispose()
