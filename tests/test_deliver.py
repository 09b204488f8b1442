"""The delivery state machine, through the real Twilio SDK, against the fake Twilio server.

Every fault ends each row in exactly one of sent / failed / suppressed / unknown, with a reason,
and the fake's own count shows no message reached it twice.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from conftest import CAMPAIGNS
from sendkit import (
    FINAL,
    OPEN,
    PHONE,
    D,
    add_customer,
    add_delivery,
    consent,
    row,
    run_to_end,
    sms_runtime,
)
from sqlalchemy import bindparam, select
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from channels.base import Message
from channels.fakes.twilio_replies import Request
from channels.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, Reply
from rules.sms import fit
from worker import actors, claims, ledger, scheduler
from worker import deliver as delivering
from worker.api.app import create_app
from worker.deliver import backoff, deliver
from worker.enqueue import enqueue_all
from worker.inprocess import running
from worker.prepared import Prepared, connection
from worker.runtime import Runtime, reset_runtime


@pytest.fixture
def rt(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio) -> Runtime:
    return sms_runtime(monkeypatch, fake)


def test_it_sends_once_and_records_the_sid_the_segments_and_the_attempt(
    rt: Runtime, fake: FakeTwilio
) -> None:
    delivery = add_delivery(rt, add_customer(rt))

    assert deliver(rt, delivery, OPEN).status == "sent"
    assert deliver(rt, delivery, OPEN).status == "skipped"  # a second job for the same row

    (request,) = fake.requests
    sent = row(rt, delivery)
    assert (sent["status"], sent["attempts"], sent["reason"]) == ("sent", 1, None)
    assert sent["provider_id"] == request.sid and sent["sent_at"] == OPEN
    assert request.to == PHONE and request.body
    assert sent["segments"] == fit(request.body)[2] >= 1


def test_a_database_away_just_after_the_send_is_waited_for_not_reported_unknown(
    rt: Runtime, fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery = add_delivery(rt, add_customer(rt))
    record, failures = claims.DeliveryRows.record, [sqlite3.OperationalError("disk I/O error")]

    def restarting(self: claims.DeliveryRows, *args: Any, **kwargs: Any) -> None:
        if failures:  # the first try: the database is restarting
            raise failures.pop()
        record(self, *args, **kwargs)

    monkeypatch.setattr(claims.DeliveryRows, "record", restarting)
    monkeypatch.setattr(delivering, "RECORD_WAITS_S", (0.01,))

    assert deliver(rt, delivery, OPEN).status == "sent"
    assert row(rt, delivery)["status"] == "sent" and len(fake.requests) == 1


def test_a_job_whose_connection_fails_goes_on_with_a_fresh_one(
    rt: Runtime, fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [add_delivery(rt, add_customer(rt, phone=f"+8613900000{i:03d}")) for i in range(3)]
    read, used = claims.DeliveryRows.read, []

    def dropping(self: claims.DeliveryRows, delivery_id: int, *args: Any) -> Any:
        used.append(self.dbapi)
        if delivery_id == ids[0]:  # the job's connection dies under its first row
            raise sqlite3.OperationalError("the database connection was lost")
        return read(self, delivery_id, *args)

    monkeypatch.setattr(claims.DeliveryRows, "read", dropping)
    with time_machine.travel(OPEN, tick=True):
        done = delivering.deliver_all(rt, ids)

    assert done.raised == [ids[0]] and not done.throttled  # its job is retried for that row
    assert [row(rt, i)["status"] for i in ids] == ["pending", "sent", "sent"]
    assert used[1] is not used[0] and used[2] is used[1]  # replaced once, then kept
    assert len(fake.requests) == 2


FAULTS = [
    # reply, final status, error code recorded, messages the provider created, requests made
    (Reply.accept(delay_s=1.5), "unknown", "twilio-timeout", 1, 1),
    (Reply.server_error(500), "unknown", "20500", 0, 1),
    (Reply.server_error(502, json_body=False), "unknown", "502", 0, 1),
    (Reply.connection_reset(), "unknown", "twilio-connection-lost", 1, 1),
    (Reply.error(21211), "failed", "21211", 0, 1),
    (Reply.error(21610), "failed", "21610", 0, 1),
    (Reply.error(20429), "failed", "20429", 0, 5),  # a 429 that never ends: retries run out
]


@pytest.mark.parametrize(
    ("reply", "status", "code", "created", "requests"),
    FAULTS,
    ids=["timeout", "500", "502-plain", "reset", "21211", "21610", "429-always"],
)
def test_each_fault_ends_the_row_once_with_its_reason_and_never_sends_twice(
    rt: Runtime,
    fake: FakeTwilio,
    reply: Reply,
    status: str,
    code: str,
    created: int,
    requests: int,
) -> None:
    fake.for_recipient(PHONE, reply)
    delivery = add_delivery(rt, add_customer(rt))

    final = run_to_end(rt, delivery, OPEN)
    deliver(rt, final["id"], final["updated_at"] + timedelta(days=1))  # a late duplicate job

    assert (final["status"], final["error_code"]) == (status, code)
    assert final["reason"] and final["attempts"] == requests
    assert row(rt, delivery)["status"] == status  # the late job changed nothing
    assert len(fake.requests) == requests and fake.stats()["created"] == created
    assert PHONE not in final["reason"]
    # A message that may have gone out keeps the segments it would be billed for.
    assert (final["segments"] is not None) == (status == "unknown")


def test_a_burst_of_429_retries_with_doubling_waits_then_sends_once(
    rt: Runtime, fake: FakeTwilio
) -> None:
    fake.then(Reply.error(20429), times=3)
    delivery = add_delivery(rt, add_customer(rt))

    now, waits = OPEN, []
    for _ in range(3):
        assert deliver(rt, delivery, now).status == "retry"
        retry = row(rt, delivery)
        waits.append((retry["due_at"] - now).total_seconds())
        assert deliver(rt, delivery, retry["due_at"] - timedelta(seconds=1)).status == "skipped"
        now = retry["due_at"]
    assert deliver(rt, delivery, now).status == "sent"

    assert waits == [30, 60, 120]
    assert row(rt, delivery)["attempts"] == 4
    assert fake.stats()["created"] == 1 and fake.duplicates() == {}


def test_backoff_doubles_and_stops_at_the_cap() -> None:
    assert [backoff(n, 30, 3600) for n in range(1, 9)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
    ]


def test_an_unsubscribed_recipient_is_recorded_as_opted_out_and_not_asked_again(
    rt: Runtime, fake: FakeTwilio
) -> None:
    fake.for_recipient(PHONE, Reply.error(21610))
    customer = add_customer(rt)
    first, second = add_delivery(rt, customer), add_delivery(rt, customer, "birthday")

    assert deliver(rt, first, OPEN).status == "failed"
    assert consent(rt, customer, "sms") is False
    outcome = deliver(rt, second, OPEN)

    assert outcome.status == "suppressed" and "no_consent" in (outcome.reason or "")
    assert len(fake.requests) == 1


def test_an_unreachable_provider_is_retried_it_never_had_the_message(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeTwilio() as gone:
        rt = sms_runtime(monkeypatch, gone)
    delivery = add_delivery(rt, add_customer(rt))

    assert deliver(rt, delivery, OPEN).status == "retry"
    final = run_to_end(rt, delivery, OPEN)

    assert final["status"] == "failed" and final["attempts"] == 5
    assert "gave up after 5 attempts" in final["reason"] and final["error_code"] == "twilio-connect"


def test_a_template_that_fails_on_this_row_fails_it_with_the_reason(
    rt: Runtime, fake: FakeTwilio
) -> None:
    delivery = add_delivery(rt, add_customer(rt), facts={"customer": {"language": "zh"}})

    outcome = deliver(rt, delivery, OPEN)

    assert outcome.status == "failed" and (row(rt, delivery)["reason"] or "").startswith("render:")
    assert fake.requests == []


def test_jobs_racing_for_one_row_send_it_once(rt: Runtime, fake: FakeTwilio) -> None:
    fake.latency_s = 0.05
    delivery = add_delivery(rt, add_customer(rt))
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def job() -> None:
        start.wait()
        outcomes.append(deliver(rt, delivery, OPEN).status)

    threads = [threading.Thread(target=job) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["sent"] + ["skipped"] * 7
    assert len(fake.requests) == 1


def test_threads_sharing_the_channel_each_get_their_own_answer(
    rt: Runtime, fake: FakeTwilio
) -> None:
    # The SDK's own HTTP client hands answers over through an attribute all threads share.
    fake.latency_s = 0.002
    channel = rt.channels["sms"]
    receipts: dict[str, str] = {}

    def send(n: int) -> None:
        to = f"+86139{n:08d}"
        for i in range(20):
            message = Message(
                delivery_id=i, channel="sms", recipient=to, body=f"{n}-{i}", customer_id=n,
                campaign="t", priority=1,
            )  # fmt: skip
            receipts[f"{n}-{i}"] = channel.send(message).provider_id

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert receipts == {request.body: request.sid for request in fake.requests}


def test_the_worker_ends_every_faulty_row_once_even_with_every_job_twice(
    rt: Runtime, fake: FakeTwilio
) -> None:
    """The Must-hold: all faults at once, through the actors and the scheduler's tick."""
    scripts = {
        "timeout": (Reply.accept(delay_s=1.5), None, "unknown"),
        "500": (Reply.server_error(500), None, "unknown"),
        "reset": (Reply.connection_reset(), None, "unknown"),
        "21211": (Reply.error(21211), None, "failed"),
        "21610": (Reply.error(21610), None, "failed"),
        "429-burst": (Reply.error(20429), 2, "sent"),
        "fine": (None, None, "sent"),
    }
    expected: dict[int, tuple[str, str]] = {}
    for n, (reply, times, status) in enumerate(scripts.values()):
        for k in range(3):
            phone = f"+86139{n:04d}{k:04d}"
            if reply is not None:
                fake.for_recipient(phone, reply, times)
            expected[add_delivery(rt, add_customer(rt, phone=phone))] = (status, phone)
    actors.broker.flush_all()
    with time_machine.travel(OPEN, tick=True) as clock, running(actors.broker, 8) as drain:
        enqueue_all(actors.broker, actors.deliver_jobs(expected) * 2)
        drain()
        for _ in range(5):
            with rt.engine.connect() as conn:
                retry = select(D.c.due_at).where(D.c.status == "retry")
                due = list(conn.execute(retry).scalars())
            if not due:
                break
            clock.move_to(max(due) + timedelta(seconds=1))
            scheduler.tick()
            drain()

    for delivery, (status, phone) in expected.items():
        final = row(rt, delivery)
        assert final["status"] == status, (phone, final)
        assert final["status"] in FINAL and (final["reason"] or status == "sent")
        assert sum(r.sid is not None for r in fake.requests if r.to == phone) <= 1
    assert fake.duplicates() == {}


@pytest.mark.postgres
def test_on_postgresql_the_same_rows_send_defer_cap_and_record_the_same(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio
) -> None:
    monkeypatch.setenv("MILEPOST_DATABASE_URL", pg_url)
    monkeypatch.setenv("MILEPOST_CAMPAIGNS", str(CAMPAIGNS))
    rt = sms_runtime(monkeypatch, fake)
    try:
        customer = add_customer(rt)
        capped = [add_delivery(rt, customer, c) for c in ("first-service", "birthday", "trade-in")]
        night = add_delivery(rt, add_customer(rt, phone="+8613900000009", tz="Europe/Berlin"))
        fake.for_recipient("+8613900000008", Reply.error(21610))
        stop = add_customer(rt, phone="+8613900000008")

        outcomes = [deliver(rt, i, OPEN).status for i in capped]
        deferred = deliver(rt, night, OPEN + timedelta(hours=20))  # 23:00 in Berlin
        opted_out = deliver(rt, add_delivery(rt, stop), OPEN)

        assert outcomes == ["sent", "sent", "suppressed"]
        assert (deferred.status, opted_out.status) == ("deferred", "failed")
        assert consent(rt, stop, "sms") is False
        sent = row(rt, capped[0])
        assert sent["sent_at"] == OPEN and sent["segments"] >= 1 and sent["provider_id"]
        assert deliver(rt, capped[0], OPEN).status == "skipped"
    finally:
        reset_runtime()


def test_prepared_statements_convert_values_as_core_does(rt: Runtime) -> None:
    delivery = add_delivery(rt, add_customer(rt))
    by_id = Prepared(select(D).where(D.c.id == bindparam("id")))

    with connection(rt.engine) as dbapi:
        fast = by_id.first(dbapi, rt.engine.dialect, {"id": delivery})

    assert fast == row(rt, delivery)  # aware datetimes, the facts as a dict, the same values
    with pytest.raises(ValueError, match="expanding"):
        Prepared(select(D).where(D.c.id.in_(bindparam("ids", expanding=True)))).compiled(
            rt.engine.dialect
        )


# ---- status callbacks racing the worker ---------------------------------------------------------

PUBLIC = "https://care.example.com/milepost"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def called_back(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio
) -> Iterator[tuple[Runtime, TestClient]]:
    """SMS to the fake Twilio with status callbacks to our API, on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        request.getfixturevalue("runtime")
    else:
        monkeypatch.setenv("MILEPOST_DATABASE_URL", request.getfixturevalue("pg_url"))
        monkeypatch.setenv("MILEPOST_CAMPAIGNS", str(CAMPAIGNS))
    rt = sms_runtime(monkeypatch, fake, MILEPOST_PUBLIC_BASE_URL=PUBLIC)
    try:
        with TestClient(create_app(rt)) as client:
            yield rt, client
    finally:
        reset_runtime()


def twilio_calls_back(
    client: TestClient, sent: Request, status: str, code: str | None = None
) -> None:
    """POST the status of ``sent`` to the callback URL it carried, signed as Twilio signs."""
    url = sent.form["StatusCallback"]
    params = {"MessageSid": sent.sid or "", "MessageStatus": status, "AccountSid": ACCOUNT_SID}
    params |= {"ErrorCode": code} if code else {}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    answer = client.post(
        url.removeprefix(PUBLIC), data=params, headers={"X-Twilio-Signature": signature}
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("reply", "reported", "code", "recorded", "final"),
    [
        (Reply.accept(), "delivered", None, "sent", "delivered"),
        (Reply.accept(), "undelivered", "30003", "sent", "undelivered"),
        (Reply.accept(), "failed", "30008", "sent", "failed"),
        (Reply.accept(), "sent", None, "sent", "sent"),
        # The answer timed out, but Twilio had the message and says so: not `unknown`.
        (Reply.accept(delay_s=1.5), "sent", None, "unknown", "sent"),
    ],
    ids=["delivered", "undelivered", "failed", "sent", "sent-after-a-timeout"],
)
def test_a_callback_before_the_workers_record_is_not_undone_by_it(
    called_back: tuple[Runtime, TestClient],
    fake: FakeTwilio,
    monkeypatch: pytest.MonkeyPatch,
    reply: Reply,
    reported: str,
    code: str | None,
    recorded: str,
    final: str,
) -> None:
    rt, client = called_back
    fake.for_recipient(PHONE, reply)
    delivery = add_delivery(rt, add_customer(rt))
    record = claims.DeliveryRows.record

    def after_the_callback(self: claims.DeliveryRows, *args: Any, **kwargs: Any) -> None:
        (sent,) = fake.requests  # Twilio has it and calls back before the worker records
        twilio_calls_back(client, sent, reported, code)
        assert (row(rt, delivery)["status"], row(rt, delivery)["provider_id"]) == (
            reported,
            sent.sid,
        )
        record(self, *args, **kwargs)

    monkeypatch.setattr(claims.DeliveryRows, "record", after_the_callback)
    assert deliver(rt, delivery, OPEN).status == recorded

    (sent,) = fake.requests
    assert sent.form["StatusCallback"] == f"{PUBLIC}/twilio/status?delivery={delivery}"
    done = row(rt, delivery)
    assert (done["status"], done["error_code"], done["provider_id"]) == (final, code, sent.sid)
    assert (done["reason"] is None) == (code is None)
    # What the worker knows is recorded all the same.
    assert done["attempts"] == 1 and done["sent_at"] == OPEN
    assert sent.body and done["segments"] == fit(sent.body)[2]


class Killed(BaseException):
    """The worker process dying (SIGKILL): nothing after it runs."""


def test_a_row_a_dead_worker_left_unknown_is_resolved_by_twilio_s_callbacks(
    called_back: tuple[Runtime, TestClient], fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, client = called_back
    delivery = add_delivery(rt, add_customer(rt))

    def killed(self: claims.DeliveryRows, *args: Any, **kwargs: Any) -> None:
        raise Killed  # between Twilio's answer and the record

    with monkeypatch.context() as patch:
        patch.setattr(claims.DeliveryRows, "record", killed)
        with pytest.raises(Killed):
            deliver(rt, delivery, OPEN)
    later = OPEN + timedelta(seconds=rt.settings.stale_sending_s + 1)
    with rt.engine.begin() as conn:
        assert ledger.mark_stale_unknown(
            conn, later, timedelta(seconds=rt.settings.stale_sending_s)
        )
    lost = row(rt, delivery)
    assert (lost["status"], lost["provider_id"]) == ("unknown", None)

    (sent,) = fake.requests
    twilio_calls_back(client, sent, "sent")
    resolved = row(rt, delivery)
    assert (resolved["status"], resolved["provider_id"], resolved["reason"]) == (
        "sent",
        sent.sid,
        None,
    )
    twilio_calls_back(client, sent, "delivered")  # found by its SID now
    assert row(rt, delivery)["status"] == "delivered"
    assert deliver(rt, delivery, later).status == "skipped" and len(fake.requests) == 1
