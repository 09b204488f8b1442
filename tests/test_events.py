"""Events: the data changes and the customer is evaluated at once, not at tomorrow's sweep."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from crm.models import CallTask, Customer, Delivery, OutboxMessage, ServiceVisit, table
from crm.records import load_records
from rules.facts import derive
from worker.api.app import create_app
from worker.cli import app
from worker.deliver import deliver
from worker.events import EventError, apply, evaluate_customer
from worker.runtime import Runtime, get_runtime, reset_runtime

NOW = datetime(2026, 11, 23, 10, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
D, OUT, T = table(Delivery), table(OutboxMessage), table(CallTask)
CUSTOMER = {"code": "C1", "name": "王伟", "title": "王先生", "phone": "13800138000"}
VEHICLE = {
    "vin": "LSVAA2BR5MN000001",
    "customer_code": "C1",
    "make": "BYD",
    "model": "Han",
    "year": "2026",
    "delivered_at": (NOW - timedelta(hours=2)).isoformat(),
}


def campaigns_of(rt: Runtime) -> set[str]:
    with rt.engine.connect() as conn:
        return set(conn.execute(select(D.c.campaign).distinct()).scalars())


def test_a_delivered_vehicle_gets_its_thank_you_and_manager_call_at_once(
    runtime: Runtime,
) -> None:
    with time_machine.travel(NOW, tick=False):
        apply(runtime, "customer.updated", CUSTOMER)
        applied = apply(runtime, "vehicle.delivered", VEHICLE)
    assert {"delivery-thank-you", "sales-manager-call"} <= campaigns_of(runtime)
    assert applied.due


def test_a_bad_event_is_refused_whole_with_the_reason(runtime: Runtime) -> None:
    apply(runtime, "customer.updated", CUSTOMER)
    with pytest.raises(EventError, match="VIN 'ABC'"):
        apply(runtime, "vehicle.delivered", {**VEHICLE, "vin": "ABC"})
    with pytest.raises(EventError, match=r"unknown event 'car\.sold'"):
        apply(runtime, "car.sold", VEHICLE)
    assert campaigns_of(runtime) == set()


def test_ingest_applies_the_good_lines_names_the_bad_and_sends_what_is_due(
    runtime: Runtime, tmp_path: Path
) -> None:
    lines = [
        {"event": "customer.updated", "data": CUSTOMER},
        {"event": "vehicle.delivered", "data": {**VEHICLE, "vin": "BAD"}},
        {"event": "vehicle.delivered", "data": VEHICLE},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\nnot json\n")

    with time_machine.travel(NOW, tick=True):
        result = CliRunner().invoke(app, ["ingest", str(path)])

    assert result.exit_code == 1
    assert "events.jsonl:2:" in result.output and "events.jsonl:4:" in result.output
    assert "2 events applied, 2 rejected" in result.output
    with runtime.engine.connect() as conn:
        sms = conn.execute(select(func.count()).select_from(OUT)).scalar_one()
        calls = conn.execute(select(func.count()).select_from(T)).scalar_one()
    assert sms == 1 and calls == 1  # the thank-you SMS and the manager's call


def test_the_events_endpoint_needs_the_token_and_reacts_at_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILEPOST_API_TOKEN", "s3cret")
    reset_runtime()
    client = TestClient(create_app(get_runtime()))
    body = {"event": "customer.updated", "data": CUSTOMER}

    assert client.post("/api/events", json=body).status_code == 401
    assert (
        client.post("/api/events", json=body, headers={"Authorization": "Bearer no"}).status_code
        == 401
    )
    auth = {"Authorization": "Bearer s3cret"}
    assert client.post("/api/events", json=body, headers=auth).status_code == 202
    with time_machine.travel(NOW, tick=True):
        answer = client.post(
            "/api/events", json={"event": "vehicle.delivered", "data": VEHICLE}, headers=auth
        )
    bad = client.post(
        "/api/events", json={"event": "vehicle.delivered", "data": {"vin": "X"}}, headers=auth
    )

    assert answer.status_code == 202 and answer.json()["due"] >= 2
    assert bad.status_code == 422 and bad.json()["error"].startswith("vehicle.delivered: ")
    assert {"delivery-thank-you", "sales-manager-call"} <= campaigns_of(get_runtime())


VIN = VEHICLE["vin"]
TODAY = NOW.date()
SV = table(ServiceVisit)


@pytest.fixture
def api(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The API with a token, and the customer C1."""
    monkeypatch.setenv("MILEPOST_API_TOKEN", "s3cret")
    reset_runtime()
    client = TestClient(create_app(get_runtime()))
    post(client, "customer.updated", CUSTOMER)
    return client


@pytest.fixture
def client(api: TestClient) -> TestClient:
    """The API, for a customer whose car was handed over 100 days ago (no campaign due)."""
    post(api, "vehicle.delivered", {**VEHICLE, "delivered_at": days_ago(100).isoformat()})
    return api


def post(client: TestClient, event: str, data: dict, at: datetime = NOW) -> Any:
    with time_machine.travel(at, tick=False):
        return client.post(
            "/api/events",
            json={"event": event, "data": data},
            headers={"Authorization": "Bearer s3cret"},
        )


def days_ago(n: int) -> datetime:
    return NOW - timedelta(days=n)


def visit(kind: str, days: int, km: int, order_no: str = "RO1") -> dict:
    day = TODAY - timedelta(days=days)
    return {"order_no": order_no, "vin": VIN, "day": str(day), "odometer_km": km, "kind": kind}


def facts_of(rt: Runtime, at: datetime = NOW) -> dict[str, dict[str, Any]]:
    """The facts of the test's one car (id 1), as the sweep derives them."""
    with rt.engine.connect() as conn:
        (record,) = load_records(conn, 1, 1)
    s = rt.settings
    return derive(record, at, tz=s.tz, holidays=rt.holidays, km_per_day=s.km_per_day)


def calls_of(rt: Runtime) -> list[str]:
    with rt.engine.connect() as conn:
        return list(conn.execute(select(T.c.campaign).order_by(T.c.id)).scalars())


def ledger(rt: Runtime, campaign: str) -> list[tuple[int, int, str, str | None]]:
    query = select(D.c.id, D.c.step, D.c.status, D.c.reason).where(D.c.campaign == campaign)
    with rt.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query.order_by(D.c.step))]


def test_a_closed_first_service_puts_its_follow_up_call_on_the_list_at_once(
    api: TestClient,
) -> None:
    rt = get_runtime()
    post(api, "vehicle.delivered", {**VEHICLE, "delivered_at": days_ago(160).isoformat()})
    (_, _, sent, _), (call, _, waiting, _) = ledger(rt, "first-service")
    assert (sent, waiting) == ("sent", "pending")  # the reminder; its call waits 7 days

    answer = post(api, "visit.closed", visit("first", days=3, km=5012))  # the DMS, late

    assert answer.status_code == 202 and answer.json()["due"] == 1
    assert calls_of(rt) == ["first-service-follow-up"]
    vehicle = facts_of(rt)["vehicle"]
    assert vehicle["first_service_done"] and vehicle["visits"] == 1
    assert vehicle["odometer_km"] == 5012 and vehicle["days_since_last_service"] == 3
    deliver(rt, call, NOW + timedelta(days=7, minutes=1))
    ((_, _, state, reason),) = [row for row in ledger(rt, "first-service") if row[0] == call]
    assert state == "cancelled" and "first_service_done" in (reason or "")


def test_a_booking_holds_the_periodic_reminder_and_its_cancellation_releases_it_at_once(
    client: TestClient,
) -> None:
    rt = get_runtime()
    booking = {"ref": "B1", "vin": VIN, "at": (NOW + timedelta(days=5)).isoformat()}
    assert post(client, "appointment.booked", booking).status_code == 202
    post(client, "visit.closed", visit("first", days=200, km=5000))  # due by time: 165 days

    assert facts_of(rt)["vehicle"]["service_booked"] is True
    assert ledger(rt, "periodic-service") == []

    answer = post(client, "appointment.cancelled", booking)

    assert answer.status_code == 202 and answer.json()["due"] >= 1
    assert facts_of(rt)["vehicle"]["service_booked"] is False
    assert [step for _, step, _, _ in ledger(rt, "periodic-service")] == [0, 1]


def test_an_open_complaint_puts_the_managers_call_on_the_list_at_once_until_it_is_closed(
    client: TestClient,
) -> None:
    rt = get_runtime()
    complaint = {"ref": "CP1", "customer_code": "C1", "opened": str(TODAY), "summary": "噪音"}

    opened = post(client, "complaint.opened", complaint)

    assert opened.status_code == 202 and opened.json()["due"] == 1
    assert calls_of(rt) == ["open-complaint"]
    assert facts_of(rt)["customer"]["open_complaints"] == 1

    later = NOW + timedelta(days=1)
    closing = {**complaint, "closed": str(later.date())}
    assert post(client, "complaint.closed", closing, at=later).status_code == 202
    assert facts_of(rt, later)["customer"]["open_complaints"] == 0
    evaluate_customer(rt, 1, NOW + timedelta(days=4))  # the daily sweeps that follow
    evaluate_customer(rt, 1, NOW + timedelta(days=8))
    assert len(ledger(rt, "open-complaint")) == 1  # not again a week later: it is closed
    assert len(ledger(rt, "complaint-follow-up")) == 1  # the call 3 days after closing


def test_an_odometer_reading_moves_the_projection_at_once_and_is_no_visit(
    client: TestClient,
) -> None:
    rt = get_runtime()
    post(client, "visit.closed", visit("first", days=40, km=5000))
    assert ledger(rt, "periodic-service") == []  # 1,600 km since the visit at 40 km a day
    reading = {"vin": VIN, "day": NOW.isoformat(), "odometer_km": 9800}  # the day and time

    answer = post(client, "odometer.read", reading)

    assert answer.status_code == 202 and answer.json()["due"] >= 1
    assert [step for _, step, _, _ in ledger(rt, "periodic-service")] == [0, 1]
    facts = facts_of(rt)
    vehicle = facts["vehicle"]
    assert vehicle["odometer_km"] == vehicle["projected_km"] == 9800
    assert vehicle["km_per_day"] == pytest.approx(120.0)  # 4,800 km in 40 days
    assert vehicle["km_since_last_service"] == 4800
    assert vehicle["days_since_last_service"] == 40 and vehicle["visits"] == 1
    assert facts["customer"]["days_since_last_visit"] == 40
    assert post(client, "odometer.read", reading).status_code == 202  # sent again: same row
    with rt.engine.connect() as conn:
        assert conn.execute(select(SV.c.kind).order_by(SV.c.id)).scalars().all() == [
            "first",
            "reading",
        ]


def test_a_lower_odometer_reading_is_refused_in_one_sentence_and_changes_nothing(
    client: TestClient,
) -> None:
    rt = get_runtime()
    post(client, "visit.closed", visit("first", days=40, km=5000))
    yesterday = {"vin": VIN, "day": str(TODAY - timedelta(days=1)), "odometer_km": 6000}
    post(client, "odometer.read", yesterday)
    with rt.engine.connect() as conn:
        before = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (SV, D)]

    below_visit = post(client, "odometer.read", {**yesterday, "odometer_km": 4000})
    below_reading = post(
        client, "odometer.read", {**yesterday, "day": str(TODAY), "odometer_km": 5900}
    )

    assert below_visit.status_code == below_reading.status_code == 422
    assert below_visit.json()["error"] == (
        f"odometer.read: odometer_km 4000 on {TODAY - timedelta(days=1)} is lower than"
        f" 5000 km on {TODAY - timedelta(days=40)} (order RO1)"
    )
    assert below_reading.json()["error"] == (
        f"odometer.read: odometer_km 5900 on {TODAY} is lower than"
        f" 6000 km on {TODAY - timedelta(days=1)} (an odometer reading)"
    )
    with rt.engine.connect() as conn:
        after = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (SV, D)]
    assert after == before
    assert facts_of(rt)["vehicle"]["odometer_km"] == 6000


def test_a_bad_odometer_reading_names_its_field(client: TestClient) -> None:
    answer = post(client, "odometer.read", {"vin": VIN, "day": "yesterday", "odometer_km": 1})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("odometer.read: day 'yesterday' must be a date like")


def test_ingest_applies_an_opened_complaint_and_puts_the_call_on_the_list(
    runtime: Runtime, tmp_path: Path
) -> None:
    complaint = {"ref": "CP1", "customer_code": "C1", "opened": str(TODAY)}
    lines = [
        {"event": "customer.updated", "data": CUSTOMER},
        {"event": "vehicle.delivered", "data": {**VEHICLE, "delivered_at": str(days_ago(100))}},
        {"event": "complaint.opened", "data": complaint},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")

    with time_machine.travel(NOW, tick=True):
        result = CliRunner().invoke(app, ["ingest", str(path)])

    assert result.exit_code == 0, result.output
    assert "3 events applied, 0 rejected; 1 messages or calls were due." in result.output
    assert calls_of(runtime) == ["open-complaint"]


def test_the_events_endpoint_answers_503_until_a_token_is_configured(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MILEPOST_API_TOKEN", raising=False)
    reset_runtime()
    client = TestClient(create_app(get_runtime()))

    answer = client.post(
        "/api/events",
        json={"event": "customer.updated", "data": CUSTOMER},
        headers={"Authorization": "Bearer anything"},
    )

    assert answer.status_code == 503
    assert answer.json() == {"error": "set MILEPOST_API_TOKEN to accept events"}
    with get_runtime().engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(table(Customer))).scalar_one() == 0
