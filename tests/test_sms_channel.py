"""The Twilio SMS channel, through the real SDK, against the fake Twilio server."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from channels.base import ChannelError, DeliveryUncertain, Message
from channels.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, Reply
from channels.privacy import MaskingFilter, mask_email, mask_phone, mask_text
from channels.sms import OPTED_OUT_CODE, TwilioSMSChannel
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PHONE, MASKED = "+8613812341234", "+86138****1234"
SENDER, SERVICE = "+8610690000", "MG" + "ab" * 16
BODY = "王先生您好，您的爱车该做首保了。Milepost Motors"


def channel(base_url: str, **settings: Any) -> TwilioSMSChannel:
    values: dict[str, Any] = {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_from": SENDER,
        "twilio_api_base": base_url,
        "twilio_timeout_s": 1.0,
        "sms_validity_s": 3600,
        "public_base_url": "https://care.example.com/",
    }
    return TwilioSMSChannel.from_settings(Settings(**{**values, **settings}), engine=None)  # type: ignore[arg-type]


def message(recipient: str = PHONE, body: str = BODY) -> Message:
    return Message(
        delivery_id=7,
        channel="sms",
        recipient=recipient,
        body=body,
        customer_id=3,
        campaign="first-service",
        priority=60,
    )


def test_it_sends_through_the_sdk_and_returns_twilio_s_sid(fake: FakeTwilio):
    receipt = channel(fake.base_url).send(message())

    (request,) = fake.requests
    assert request.form == {
        "To": PHONE,
        "From": SENDER,
        "Body": BODY,
        "ValidityPeriod": "3600",
        "StatusCallback": "https://care.example.com/twilio/status?delivery=7",
    }
    assert receipt.provider_id == request.sid
    assert receipt.provider_id.startswith("SM") and len(receipt.provider_id) == 34
    assert receipt.status == "sent"


def test_it_sends_from_the_messaging_service_when_one_is_configured(fake: FakeTwilio):
    channel(fake.base_url, twilio_messaging_service_sid=SERVICE).send(message())
    (request,) = fake.requests
    assert request.form["MessagingServiceSid"] == SERVICE
    assert "From" not in request.form


def test_without_a_public_base_url_there_is_no_status_callback(fake: FakeTwilio):
    channel(fake.base_url, public_base_url=None).send(message())
    assert "StatusCallback" not in fake.requests[0].form


def test_it_authenticates_with_the_account_sid_and_token(fake: FakeTwilio):
    channel(fake.base_url).send(message())
    with pytest.raises(ChannelError) as caught:
        channel(fake.base_url, twilio_auth_token="wrong").send(message())

    right, wrong = fake.requests
    assert (right.username, right.authorized) == (fake.account_sid, True)
    assert (wrong.username, wrong.authorized, wrong.status) == (fake.account_sid, False, 401)
    # Our credentials, not this message: retry once the operator has fixed them.
    assert (caught.value.permanent, caught.value.code) == (False, "20003")
    assert "MILEPOST_TWILIO_AUTH_TOKEN" in str(caught.value)


@pytest.mark.parametrize(
    ("reply", "uncertain", "permanent", "code", "created"),
    [
        (Reply.error(21211), False, True, "21211", 0),
        (Reply.error(21610), False, True, OPTED_OUT_CODE, 0),
        (Reply.error(21617), False, True, "21617", 0),
        (Reply.error(20429), False, False, "20429", 0),
        (Reply(status=429), False, False, "429", 0),
        (Reply.server_error(500), True, False, "20500", 0),
        (Reply.server_error(502, json_body=False), True, False, "502", 0),
        (Reply.accept(delay_s=1.0), True, False, "twilio-timeout", 1),
        (Reply.connection_reset(), True, False, "twilio-connection-lost", 1),
    ],
    ids=[
        "invalid-number",
        "unsubscribed",
        "other-4xx",
        "too-many-requests",
        "plain-429",
        "500",
        "502-not-json",
        "timeout",
        "reset-after-sending",
    ],
)
def test_provider_faults_are_permanent_transient_or_uncertain(
    fake: FakeTwilio, reply: Reply, uncertain: bool, permanent: bool, code: str, created: int
):
    fake.then(reply)
    with pytest.raises(ChannelError) as caught:
        channel(fake.base_url, twilio_timeout_s=0.3).send(message())

    error = caught.value
    assert (isinstance(error, DeliveryUncertain), error.permanent, error.code) == (
        uncertain,
        permanent,
        code,
    )
    assert PHONE not in str(error)
    # Why "uncertain" must never be resent: after a timeout or a reset the message went out.
    assert fake.count(PHONE, BODY) == created


def test_an_opted_out_recipient_is_reported_as_such(fake: FakeTwilio):
    fake.for_recipient(PHONE, Reply.error(21610))
    with pytest.raises(ChannelError) as caught:
        channel(fake.base_url).send(message())
    assert caught.value.code == OPTED_OUT_CODE == "21610"
    assert "opted out" in str(caught.value) and MASKED in str(caught.value)


def test_a_refused_connection_is_transient_nothing_was_sent():
    with FakeTwilio() as gone:
        url = gone.base_url
    with pytest.raises(ChannelError) as caught:
        channel(url).send(message())
    assert not isinstance(caught.value, DeliveryUncertain)
    assert (caught.value.permanent, caught.value.code) == (False, "twilio-connect")


def test_the_fake_validates_numbers_like_twilio(fake: FakeTwilio):
    with pytest.raises(ChannelError) as caught:
        channel(fake.base_url).send(message(recipient="13812341234"))  # not E.164
    assert (caught.value.permanent, caught.value.code) == (True, "21211")


def test_the_fake_counts_duplicates(fake: FakeTwilio):
    sms = channel(fake.base_url)
    sms.send(message())
    sms.send(message())
    sms.send(message(body="another text"))

    assert fake.count(PHONE, BODY) == 2
    assert fake.duplicates() == {(PHONE, BODY): 2}
    assert fake.stats()["duplicates"] == 1


def test_the_fake_follows_its_script_for_the_next_requests_and_per_recipient(fake: FakeTwilio):
    other = "+8613900001111"
    fake.then(Reply.error(20429), times=2)
    fake.for_recipient(other, Reply.error(21610), times=1)
    sms = channel(fake.base_url)

    outcomes = []
    for to in [other, PHONE, PHONE, PHONE, other]:
        try:
            outcomes.append(sms.send(message(recipient=to)).status)
        except ChannelError as exc:
            outcomes.append(exc.code or "")
    # The recipient's rule does not use up the "next N"; both run out.
    assert outcomes == ["21610", "20429", "20429", "sent", "sent"]


def test_the_command_line_server_starts_and_answers():
    command = [sys.executable, "-m", "channels.fakes.twilio_server", "--port", "0"]
    server = subprocess.Popen(
        [*command, "--latency-ms", "5"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        started = json.loads(server.stdout.readline())
        base = started["base_url"]
        receipt = channel(base).send(message())
        plan = {"reply": {"status": 400, "code": 21211}, "times": 1}
        post = urllib.request.Request(f"{base}/_fake/plan", json.dumps(plan).encode())
        urllib.request.urlopen(post, timeout=1).close()
        with pytest.raises(ChannelError, match="not a valid phone number"):
            channel(base).send(message())
        with urllib.request.urlopen(f"{base}/_fake/stats", timeout=1) as answer:
            stats = json.load(answer)
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=5)
    assert receipt.provider_id.startswith("SM")
    assert stats["created"] == 1 and stats["by_status"] == {"201": 1, "400": 1}
    assert server.returncode == 0
    assert json.loads(out.splitlines()[-1])["requests"] == 2


def test_log_lines_mask_the_phone_number(fake: FakeTwilio, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="milepost.channels.sms")
    sms = channel(fake.base_url, twilio_timeout_s=0.3)
    sms.send(message())
    for reply in [Reply.error(21211), Reply.accept(delay_s=1.0)]:
        fake.then(reply)
        with pytest.raises(ChannelError):
            sms.send(message())
    assert PHONE not in caplog.text
    assert MASKED in caplog.text


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"twilio_from": None}, "MILEPOST_TWILIO_FROM or MILEPOST_TWILIO_MESSAGING_SERVICE_SID"),
        ({"sms_validity_s": 0}, "MILEPOST_SMS_VALIDITY_S"),
        ({"sms_validity_s": 36001}, "MILEPOST_SMS_VALIDITY_S"),
        ({"twilio_auth_token": None}, "MILEPOST_TWILIO_AUTH_TOKEN"),
        ({"twilio_api_base": "127.0.0.1:8099"}, "MILEPOST_TWILIO_API_BASE"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(settings: dict[str, Any], problem: str):
    with pytest.raises(ValueError, match=problem):
        channel("http://127.0.0.1:9", **settings)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (PHONE, MASKED),
        ("+14155552671", "+141****2671"),
        ("13812341234", "138****1234"),
        ("+12", "+****"),
    ],
)
def test_phone_numbers_are_masked(text: str, masked: str):
    assert mask_phone(text) == masked


def test_text_and_log_records_are_masked():
    assert mask_email("wang.wei@example.cn") == "w***@example.cn"
    assert mask_text(f"to {PHONE} or wang.wei@example.cn") == f"to {MASKED} or w***@example.cn"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sms to %s", (PHONE,), None)
    MaskingFilter().filter(record)
    assert record.getMessage() == f"sms to {MASKED}"


def test_connections_are_kept_alive_and_one_the_server_closed_is_not_used(fake: FakeTwilio):
    sms = channel(fake.base_url)
    for _ in range(3):
        sms.send(message())
    assert fake.connections_accepted == 1

    fake.close_idle_connections()  # Twilio's keep-alive timeout, between two messages
    receipt = sms.send(message(body="after the server closed the connection"))

    # Sent once, on a new connection: not `unknown` for a connection that was already gone.
    assert receipt.status == "sent"
    assert fake.count(PHONE, "after the server closed the connection") == 1
    assert fake.connections_accepted == 2


class ConnectProxy:
    """A forward proxy that only tunnels (CONNECT), as a dealer's office proxy does for HTTPS."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.heads: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(4096)
            self.heads.append(head.decode())
            host, port = head.split()[1].decode().rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for one, other in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(one, other), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_a_proxy_from_the_environment_tunnels_the_requests(
    fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
):
    proxy = ConnectProxy()
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://milepost:s%40cret@127.0.0.1:{proxy.port}")

    try:
        receipt = channel(fake.base_url).send(message())
    finally:
        proxy.listener.close()

    assert receipt.provider_id.startswith("SM") and fake.count(PHONE, BODY) == 1
    (head,) = proxy.heads
    assert head.startswith(f"CONNECT 127.0.0.1:{fake.base_url.rsplit(':', 1)[1]} HTTP/")
    assert "Proxy-Authorization: Basic bWlsZXBvc3Q6c0BjcmV0" in head  # milepost:s@cret


def test_a_proxy_that_refuses_is_transient_nothing_was_sent(
    fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")

    with pytest.raises(ChannelError) as caught:
        channel(fake.base_url).send(message())

    assert not isinstance(caught.value, DeliveryUncertain)
    assert (caught.value.permanent, caught.value.code) == (False, "twilio-connect")
    assert fake.requests == []
