"""Journeys: a later step goes out only if its `unless:` still does not hold when it is due."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from crm.models import CallTask, Delivery, table
from worker.deliver import deliver
from worker.events import apply
from worker.runtime import Runtime

NOW = datetime(2026, 11, 23, 10, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
D, T = table(Delivery), table(CallTask)
VIN = "LSVAA2BR5MN000001"


def first_service_journey(rt: Runtime) -> tuple[int, int]:
    """A car delivered 160 days ago, never serviced: the reminder SMS, then a call in 7 days."""
    apply(rt, "customer.updated", {"code": "C1", "name": "王伟", "phone": "13800138000"}, NOW)
    delivered = (NOW - timedelta(days=160)).isoformat()
    data = {"vin": VIN, "customer_code": "C1", "make": "BYD", "model": "Han", "year": "2026"}
    applied = apply(rt, "vehicle.delivered", {**data, "delivered_at": delivered}, NOW)
    for delivery_id in applied.due:
        deliver(rt, delivery_id, NOW)
    with rt.engine.connect() as conn:
        rows = dict(
            conn.execute(select(D.c.step, D.c.id).where(D.c.campaign == "first-service")).all()
        )
    return rows[0], rows[1]


def status(rt: Runtime, delivery_id: int) -> tuple[str, str | None]:
    with rt.engine.connect() as conn:
        row = conn.execute(select(D.c.status, D.c.reason).where(D.c.id == delivery_id)).one()
    return row.status, row.reason


def calls(rt: Runtime) -> int:
    with rt.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(T)).scalar_one()


def test_the_call_is_cancelled_when_the_customer_booked_in_the_meantime(runtime: Runtime) -> None:
    sms, call = first_service_journey(runtime)
    assert status(runtime, sms)[0] == "sent" and status(runtime, call)[0] == "pending"
    booking = {"ref": "B1", "vin": VIN, "at": (NOW + timedelta(days=10)).isoformat()}
    apply(runtime, "appointment.booked", booking, NOW + timedelta(days=2))

    deliver(runtime, call, NOW + timedelta(days=7, minutes=1))

    state, reason = status(runtime, call)
    assert state == "cancelled" and "service_booked" in (reason or "")
    assert calls(runtime) == 0


def test_the_call_goes_on_the_list_when_nothing_was_booked(runtime: Runtime) -> None:
    _, call = first_service_journey(runtime)

    assert deliver(runtime, call, NOW + timedelta(days=6)).status == "skipped"  # not due yet
    deliver(runtime, call, NOW + timedelta(days=7, minutes=1))

    assert status(runtime, call)[0] == "sent"
    assert calls(runtime) == 1


@pytest.mark.parametrize("times", [2])
def test_a_due_step_runs_once_however_often_it_is_delivered(runtime: Runtime, times: int) -> None:
    _, call = first_service_journey(runtime)
    for _ in range(times):
        deliver(runtime, call, NOW + timedelta(days=7, minutes=1))
    assert calls(runtime) == 1
