"""Privacy, end to end: a whole run's logs name no customer's full phone number or e-mail address.

A demo dealership is swept through the CLI; SMS go through the real Twilio SDK to the fake
Twilio (which refuses, times out and fails some of them on purpose) and e-mail through a real
SMTP server. Every record of every logger is captured at DEBUG, whether or not a handler would
print it, with the tracebacks formatted: none may hold a full number or address.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from sendkit import add_delivery, sms_runtime
from sqlalchemy import func, select
from typer.testing import CliRunner

from channels.fakes.twilio_server import FakeTwilio, Reply
from crm.demo import generate
from crm.models import Customer, Delivery, table
from worker import actors, scheduler
from worker.cli import app
from worker.inprocess import running
from worker.runtime import Runtime

C, D = table(Customer), table(Delivery)
DAY = date(2026, 11, 23)
MORNING = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
FAULTS = [
    Reply.error(21211),
    Reply.error(21610),
    Reply.server_error(500),
    Reply.accept(delay_s=1.0),
    Reply.connection_reset(),
    Reply.error(20429),
]


@pytest.fixture
def smtp_port() -> Iterator[int]:
    with socket.socket() as probe:  # aiosmtpd checks its own port after starting: not 0
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


def test_the_logs_of_a_whole_run_hold_no_full_phone_number_or_address(
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    smtp_port: int,
) -> None:
    generate(runtime.settings.database_url, customers=200, seed=5, today=DAY)
    with runtime.engine.connect() as conn:
        phones = [p for p in conn.execute(select(C.c.phone)).scalars() if p]
        emails = [e for e in conn.execute(select(C.c.email)).scalars() if e]
        mailable = conn.execute(select(C.c.id).where(C.c.email.is_not(None)).limit(5)).scalars()
    for customer in mailable:  # e-mail steps are rare on one demo day: add a few
        template = "membership-expiry/email"
        add_delivery(runtime, customer, "membership-expiry", channel="email", template=template)
    caplog.set_level(logging.DEBUG)

    with FakeTwilio() as fake, time_machine.travel(MORNING, tick=True) as clock:
        for n, phone in enumerate(phones[:60]):
            fake.for_recipient(phone, FAULTS[n % len(FAULTS)])
        rt = sms_runtime(
            monkeypatch,
            fake,
            MILEPOST_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
            MILEPOST_PUBLIC_BASE_URL="https://care.dealer.example",
        )
        swept = CliRunner().invoke(app, ["sweep", "--date", DAY.isoformat()])
        clock.shift(timedelta(minutes=10))  # the retries' backoff is over: the tick resends
        with running(actors.broker) as drain:
            scheduler.tick()
            drain()
        listed = CliRunner().invoke(app, ["deliveries", "--limit", "500"])

    assert swept.exit_code == 0, swept.output
    with rt.engine.connect() as conn:
        by_status: dict[str, int] = dict(
            conn.execute(select(D.c.status, func.count()).group_by(D.c.status)).all()
        )
        by_channel: dict[str, int] = dict(
            conn.execute(
                select(D.c.channel, func.count()).where(D.c.status == "sent").group_by(D.c.channel)
            ).all()
        )
    assert {"sent", "failed", "unknown"} <= set(by_status), by_status
    assert by_channel.get("sms") and by_channel.get("email"), by_channel
    # Milepost's records and its libraries' (SDK, urllib3, Dramatiq, SQLAlchemy); not the SMTP
    # server's, which stands in for the provider here and logs every envelope it receives.
    ours = [r for r in caplog.records if not r.name.startswith("mail.")]
    logs = "\n".join(logging.Formatter().format(r) for r in ours) + swept.output + listed.output
    assert "****" in logs  # the run did log about customers, masked
    leaked = [p for p in phones if p in logs or p.removeprefix("+86") in logs]
    leaked += [e for e in emails if e in logs]
    assert leaked == []
