"""Export a database as the dealer CSV files the importer reads (the demo's export)."""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from sqlalchemy import Engine, Select, select

from crm.csvspec import BY_NAME, ENTITIES
from crm.models import Appointment, Complaint, Consent, Membership, ServiceVisit
from crm.models import Customer as C
from crm.models import Vehicle as V

M, SV, A, CP, CS = Membership, ServiceVisit, Appointment, Complaint, Consent


def _queries() -> dict[str, Select[Any]]:
    # Column labels are the CSV column names; export() checks them against csvspec.
    code = C.code.label("customer_code")
    return {
        "customers": select(
            C.code,
            C.name,
            C.title,
            C.phone,
            C.email,
            C.birthday,
            C.language,
            C.segment,
            C.timezone,
        ).order_by(C.id),
        "memberships": select(
            code, M.tier, M.points_cumulative, M.points_redeemable, M.joined, M.expires
        )
        .join(C, C.id == M.customer_id)
        .order_by(M.id),
        "vehicles": select(
            V.vin,
            code,
            V.make,
            V.model,
            V.year,
            V.delivered_at,
            V.warranty_months,
            V.warranty_km,
            V.insurance_expiry,
            V.inspection_due,
        )
        .join(C, C.id == V.customer_id)
        .order_by(V.id),
        "service_visits": select(
            SV.order_no,
            V.vin,
            SV.day,
            SV.odometer_km,
            SV.kind,
            SV.amount,
            SV.declined_items,
            SV.satisfaction,
        )
        .join(V, V.id == SV.vehicle_id)
        .order_by(SV.id),
        "appointments": select(A.ref, V.vin, A.at, A.status)
        .join(V, V.id == A.vehicle_id)
        .order_by(A.id),
        "complaints": select(CP.ref, code, CP.opened, CP.closed, CP.summary)
        .join(C, C.id == CP.customer_id)
        .order_by(CP.id),
        "consents": select(code, CS.channel, CS.allowed, CS.source, CS.updated_at)
        .join(C, C.id == CS.customer_id)
        .order_by(CS.id),
    }


def _cell(value: Any, tz: ZoneInfo, odd: bool) -> str:
    # Both forms the importer reads: local times without an offset, and with one.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        local = value.astimezone(tz)
        return local.isoformat(timespec="minutes") if odd else f"{local:%Y-%m-%d %H:%M}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _national(phone: str | None) -> str | None:
    # A DMS usually keeps national numbers; the importer turns them into E.164.
    if phone is None:
        return None
    number = phonenumbers.parse(phone)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


def export(engine: Engine, directory: Path, tz: ZoneInfo) -> None:
    """Write ``<entity>.csv`` for every entity (UTF-8 with a BOM, as Excel saves it)."""
    queries = _queries()
    with engine.connect() as conn:
        for entity in ENTITIES:
            query = queries[entity.name]
            header = [column.name for column in query.selected_columns]
            assert header == [f.name for f in BY_NAME[entity.name].fields], entity.name
            path = directory / entity.filename
            with path.open("w", encoding="utf-8-sig", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                for n, row in enumerate(conn.execute(query)):
                    values = list(row)
                    if entity.name == "customers" and n % 2:
                        values[3] = _national(values[3])
                    writer.writerow([_cell(v, tz, bool(n % 2)) for v in values])
