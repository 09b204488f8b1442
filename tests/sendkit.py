"""What the delivery tests share: customers and ledger rows, a runtime sending SMS to a fake Twilio.

Rows are inserted as the sweep would write them (one per campaign step, the campaign's priority
and template, the facts of a sample customer), so deliver() renders real templates.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select

from channels.fakes.twilio_server import FakeTwilio
from crm.models import Consent, Customer, Delivery, table
from rules.sample import sample_context
from worker.deliver import deliver
from worker.runtime import Runtime, get_runtime, reset_runtime

C, CS, D = table(Customer), table(Consent), table(Delivery)
PHONE = "+8613812341234"
SHANGHAI, BERLIN = ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Berlin")
OPEN = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)  # inside the default 09:00-20:00
FINAL = {"sent", "failed", "suppressed", "unknown"}
_numbers = itertools.count(1)


def sms_runtime(monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio, **env: str) -> Runtime:
    """The runtime with SMS going through the real Twilio SDK to ``fake``; ``env`` on top."""
    settings = {
        "MILEPOST_TWILIO_ACCOUNT_SID": fake.account_sid,
        "MILEPOST_TWILIO_AUTH_TOKEN": fake.auth_token,
        "MILEPOST_TWILIO_FROM": "+8610690000",
        "MILEPOST_TWILIO_API_BASE": fake.base_url,
        "MILEPOST_TWILIO_TIMEOUT_S": "0.5",
        "MILEPOST_SMS_RATE_PER_S": "0",  # no limit, unless a test sets one
        **env,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    reset_runtime()
    return get_runtime()


def add_customer(
    rt: Runtime, *, phone: str | None = PHONE, email: str | None = None, tz: str | None = None
) -> int:
    number = next(_numbers)
    row = {"code": f"T{number}", "name": f"客户{number}", "phone": phone, "email": email}
    with rt.engine.begin() as conn:
        return int(
            conn.execute(insert(C).values(**row, timezone=tz).returning(C.c.id)).scalar_one()
        )


def add_delivery(
    rt: Runtime,
    customer_id: int,
    campaign: str = "first-service",
    *,
    step: int = 0,
    due_at: datetime = OPEN,
    **values: Any,
) -> int:
    """A pending ledger row for ``campaign``'s ``step``, as the sweep writes it."""
    found = rt.campaigns[campaign]
    facts = {k: v for k, v in sample_context("zh").items() if k != "dealer"}
    row = {
        "campaign": campaign,
        "step": step,
        "subject_id": next(_numbers),
        "occurrence": "once",
        "customer_id": customer_id,
        "vehicle_id": None,
        "channel": found.steps[step].channel,
        "template": found.steps[step].template,
        "priority": found.priority,
        "due_at": due_at,
        "status": "pending",
        "attempts": 0,
        "facts": facts,
        "created_at": due_at - timedelta(minutes=5),
        "updated_at": due_at - timedelta(minutes=5),
        **values,
    }
    with rt.engine.begin() as conn:
        return int(conn.execute(insert(D).values(**row).returning(D.c.id)).scalar_one())


def row(rt: Runtime, delivery_id: int) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        return dict(conn.execute(select(D).where(D.c.id == delivery_id)).mappings().one())


def statuses(rt: Runtime) -> dict[str, int]:
    with rt.engine.connect() as conn:
        query = select(D.c.status, func.count()).group_by(D.c.status)
        return {status: int(count) for status, count in conn.execute(query)}


def consent(rt: Runtime, customer_id: int, channel: str) -> bool | None:
    with rt.engine.connect() as conn:
        query = select(CS.c.allowed).where(CS.c.customer_id == customer_id, CS.c.channel == channel)
        return conn.execute(query).scalar()


def run_to_end(rt: Runtime, delivery_id: int, now: datetime, limit: int = 20) -> dict[str, Any]:
    """Deliver, and again at each retry's due time, until the row stops waiting; the row."""
    for _ in range(limit):
        deliver(rt, delivery_id, now)
        current = row(rt, delivery_id)
        if current["status"] != "retry":
            return current
        now = current["due_at"]
    raise AssertionError(f"delivery {delivery_id} still retrying after {limit} attempts")
