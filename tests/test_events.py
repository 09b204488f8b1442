"""Events: the data changes and the customer is evaluated at once, not at tomorrow's sweep."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from crm.models import CallTask, Delivery, OutboxMessage, table
from worker.api.app import create_app
from worker.cli import app
from worker.events import EventError, apply
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
