"""The call-center's list: open call tasks for a day, most important first, and its CSV."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from crm.models import CallTask, Customer, Vehicle, table

T, C, V = table(CallTask), table(Customer), table(Vehicle)
COLUMNS = [
    "id",
    "priority",
    "due_by",
    "overdue",
    "customer",
    "phone",
    "campaign",
    "vehicle",
    "script",
]


def call_list(conn: Connection, day: date, tz: ZoneInfo) -> list[dict[str, Any]]:
    """Open calls created by the end of ``day`` (local), by priority then deadline."""
    end = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
    start = datetime.combine(day, time(), tz).astimezone(UTC)
    query = (
        select(
            T.c.id,
            T.c.priority,
            T.c.due_by,
            C.c.name.label("customer"),
            T.c.phone,
            T.c.campaign,
            (V.c.make + " " + V.c.model).label("vehicle"),
            T.c.script,
        )
        .join(C, C.c.id == T.c.customer_id)
        .outerjoin(V, V.c.id == T.c.vehicle_id)
        .where(T.c.status == "open", T.c.created_at < end)
        .order_by(T.c.priority.desc(), T.c.due_by, T.c.id)
    )
    rows = []
    for row in conn.execute(query).mappings():
        item = dict(row)
        item["overdue"] = item["due_by"] < start
        item["due_by"] = item["due_by"].astimezone(tz).strftime("%Y-%m-%d %H:%M")
        rows.append(item)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the call list as UTF-8 CSV with a BOM, so spreadsheet tools show Chinese names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            values = {key: "" if row.get(key) is None else row[key] for key in COLUMNS}
            writer.writerow(values | {"overdue": "yes" if row["overdue"] else "no"})


def expire(conn: Connection, now: datetime) -> int:
    """Open calls past their deadline leave the list as `expired` (the campaign dropped them)."""
    result = conn.execute(
        T.update()
        .where(T.c.status == "open", T.c.due_by < now)
        .values(status="expired", closed_at=now)
    )
    return int(result.rowcount)
