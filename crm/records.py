"""Read one flat record per vehicle (the input of rules.facts.derive), a range of ids at a time.

A batch costs three queries whatever its size: its vehicles (with booked appointments),
aggregates of their service visits, and their owners (crm.owners). Nothing is loaded for the
whole fleet at once, so memory stays flat in the number of vehicles. The statements are
SQLAlchemy Core, compiled once per dialect; their rows are read as the driver's tuples and
become dicts in one step: the per-row cost of the Python side, not the queries, was most of
the time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Integer,
    bindparam,
    case,
    func,
    select,
    type_coerce,
)
from sqlalchemy.engine import Dialect

from crm.models import READING, Appointment, ServiceVisit, Vehicle, table
from crm.owners import owners_query

V, SV, A = table(Vehicle), table(ServiceVisit), table(Appointment)
# The statements are built once (below, cached) and bound per batch: building them and their
# cache keys anew cost as much as a tenth of the reading.
LO, HI = bindparam("lo", type_=Integer), bindparam("hi", type_=Integer)


def id_ranges(conn: Connection, batch: int) -> list[tuple[int, int]]:
    """Inclusive vehicle-id ranges of at most ``batch`` ids that cover every vehicle."""
    lo, hi = conn.execute(select(func.min(V.c.id), func.max(V.c.id))).one()
    if lo is None:
        return []
    return [(start, min(start + batch - 1, hi)) for start in range(lo, hi + 1, batch)]


@cache
def _vehicles() -> Any:
    # The owner's lowest vehicle id carries the customer campaigns, so they run once per owner.
    # An index seek per row (vehicles.customer_id): cheaper than grouping the owners' fleets.
    owned = V.alias("owned")
    first = select(func.min(owned.c.id)).where(owned.c.customer_id == V.c.customer_id)
    booked = select(func.max(A.c.at)).where(A.c.vehicle_id == V.c.id, A.c.status == "booked")
    return (
        select(
            V.c.id.label("vehicle_id"),
            V.c.customer_id,
            type_coerce(V.c.id == first.scalar_subquery(), Boolean).label("is_primary"),
            *(V.c[name] for name in ("vin", "make", "model")),
            V.c.year.label("model_year"),
            *(V.c[name] for name in ("delivered_at", "warranty_months", "warranty_km")),
            *(V.c[name] for name in ("insurance_expiry", "inspection_due")),
            booked.scalar_subquery().label("next_appointment_at"),
        )
        .where(V.c.id.between(LO, HI))
        .order_by(V.c.id)
    )


@cache
def _visit_stats() -> Any:
    # Odometers never decrease (the importer and events enforce it), so min/max are the first
    # and last readings. Every row is a reading; a stand-alone one (kind "reading") is no visit.
    visit = SV.c.kind != READING
    latest = SV.alias("latest")
    declined = (
        select(latest.c.declined_items)
        .where(latest.c.vehicle_id == SV.c.vehicle_id, latest.c.kind != READING)
        .order_by(latest.c.day.desc(), latest.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            SV.c.vehicle_id,
            func.count(case((visit, 1))).label("visits"),
            func.min(SV.c.day).label("first_reading_day"),
            func.min(SV.c.odometer_km).label("first_reading_km"),
            func.max(SV.c.day).label("last_reading_day"),
            func.max(SV.c.odometer_km).label("last_reading_km"),
            func.max(case((visit, SV.c.day))).label("last_visit_day"),
            func.max(case((visit, SV.c.odometer_km))).label("last_visit_km"),
            func.max(case((SV.c.kind == "first", SV.c.day))).label("first_service_day"),
            func.max(case((SV.c.kind == "repair", SV.c.day))).label("last_repair_day"),
            func.coalesce(declined, 0).label("last_declined_items"),
        )
        .where(SV.c.vehicle_id.between(LO, HI))
        .group_by(SV.c.vehicle_id)
    )


class _Statement:
    """A statement compiled once for a dialect, run on the driver's cursor."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        self.compiled = statement.compile(dialect=dialect)
        self.text = str(self.compiled)
        self.positions = self.compiled.positiontup  # None for named parameters

    def fetch(self, cursor: Any, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        # The statements bind only ints, text and lists of ints: no bind processors to apply.
        params: Any = self.compiled.construct_params(values)
        if self.positions is not None:
            params = [params[name] for name in self.positions]
        cursor.execute(self.text, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


class _Statements:
    def __init__(self, dialect: Dialect) -> None:
        self.vehicles = _Statement(_vehicles(), dialect)
        self.visit_stats = _Statement(_visit_stats(), dialect)
        self.owners = _Statement(owners_query(dialect.name), dialect)


_compiled_for: dict[tuple[str, str], _Statements] = {}


def _compiled(dialect: Dialect) -> _Statements:
    key = (dialect.name, dialect.paramstyle)
    statements = _compiled_for.get(key)
    if statements is None:
        statements = _compiled_for[key] = _Statements(dialect)
    return statements


class _Days(dict[Any, date | None]):
    """Date column values as dates: SQLite hands back text, parsed once per distinct day.

    A batch has some 25,000 dates but only a few thousand distinct days: a lookup costs two
    thirds of parsing, and the records share their date objects. PostgreSQL's dates (and None)
    map to themselves. Bounded: it starts over past ``LIMIT`` entries (a century of days).
    """

    LIMIT = 40_000

    def __missing__(self, value: Any) -> date | None:
        if len(self) > self.LIMIT:
            self.clear()
        day = date.fromisoformat(value) if isinstance(value, str) else value
        self[value] = day
        return day


_DAYS = _Days()


def _moment(value: Any) -> datetime:
    """A datetime column's value, stored as naive UTC (crm.types.UTCDateTime), made aware."""
    if isinstance(value, str):  # SQLite
        try:  # parsed with its zone: replace(tzinfo=) alone costs five times the parsing
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # written with an offset of its own: keep the stored time, as before
            value = datetime.fromisoformat(value)
    moment: datetime = value.replace(tzinfo=UTC)
    return moment


_NO_VISITS = (0, None, None, None, None, None, None, None, None, 0)


def load_records(conn: Connection, lo: int, hi: int) -> list[dict[str, Any]]:
    """The records of the vehicles with ids in ``lo..hi``, in id order."""
    if conn.dialect.name == "postgresql":
        # Its cost estimates for these queries pass jit_above_cost, and compiling them took
        # ten times as long as running them. LOCAL: only until this transaction ends.
        conn.exec_driver_sql("SET LOCAL jit = off")
    statements = _compiled(conn.dialect)
    bounds = {"lo": lo, "hi": hi}
    # The driver's own cursor and its plain tuples: SQLAlchemy's Row objects and result
    # processors cost a third of the reading. The values are converted below, by hand.
    cursor = conn.connection.cursor()
    try:
        rows = statements.vehicles.fetch(cursor, bounds)
        if not rows:
            return []
        stats = statements.visit_stats.fetch(cursor, bounds)
        owned = statements.owners.fetch(cursor, {**bounds, "owners": sorted({r[1] for r in rows})})
    finally:
        cursor.close()
    day = _DAYS
    visits = {
        vid: (count, day[first], first_km, day[last], last_km, day[visit], visit_km,
              day[first_service], day[repair], declined)
        for vid, count, first, first_km, last, last_km, visit, visit_km, first_service, repair,
            declined in stats
    }  # fmt: skip
    owners = {}
    for (
        cid, name, title, birthday, language, segment, timezone, tier, cumulative, redeemable,
        joined, expires, last_visit, repair, score, complaints, closed, sms, email, call,
    ) in owned:  # fmt: skip
        owners[cid] = (
            name, title, day[birthday], language, segment, timezone, tier, cumulative, redeemable,
            day[joined], day[expires], day[last_visit], float(repair), score, int(complaints),
            day[closed],
            # No consent row means the dealer's default: allowed.
            sms is None or bool(sms), email is None or bool(email), call is None or bool(call),
        )  # fmt: skip
    records = []
    # Unpacked into names and rebuilt as one dict display: a third of the cost of zipping
    # names with values. tests/test_records.py checks every key against a naive reading.
    for vid, cid, primary, vin, make, model, year, delivered, w_months, w_km, insured, \
            inspected, booked in rows:  # fmt: skip
        (
            count, first, first_km, last, last_km, visit, visit_km, first_service, repair,
            declined,
        ) = visits.get(vid, _NO_VISITS)  # fmt: skip
        (
            name, title, birthday, language, segment, timezone, tier, cumulative, redeemable,
            joined, expires, last_visit, max_repair, score, complaints, closed, sms, email, call,
        ) = owners[cid]  # fmt: skip
        records.append(
            {
                "vehicle_id": vid,
                "customer_id": cid,
                "is_primary": bool(primary),
                "vin": vin,
                "make": make,
                "model": model,
                "model_year": year,
                "delivered_at": _moment(delivered),
                "warranty_months": w_months,
                "warranty_km": w_km,
                "insurance_expiry": day[insured],
                "inspection_due": day[inspected],
                "next_appointment_at": None if booked is None else _moment(booked),
                "visits": count,
                "first_reading_day": first,
                "first_reading_km": first_km,
                "last_reading_day": last,
                "last_reading_km": last_km,
                "last_visit_day": visit,
                "last_visit_km": visit_km,
                "first_service_day": first_service,
                "last_repair_day": repair,
                "last_declined_items": declined,
                "name": name,
                "title": title,
                "birthday": birthday,
                "language": language,
                "segment": segment,
                "timezone": timezone,
                "tier": tier,
                "points_cumulative": cumulative,
                "points_redeemable": redeemable,
                "membership_joined": joined,
                "membership_expires": expires,
                "customer_last_visit_day": last_visit,
                "max_repair_amount": max_repair,
                "last_satisfaction": score,
                "open_complaints": complaints,
                "last_complaint_closed": closed,
                "consent_sms": sms,
                "consent_email": email,
                "consent_call": call,
            }
        )
    return records


def iter_records(conn: Connection, batch: int) -> Iterator[dict[str, Any]]:
    """Every vehicle's record, streamed a batch at a time."""
    for lo, hi in id_ranges(conn, batch):
        yield from load_records(conn, lo, hi)
