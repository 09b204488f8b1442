"""The SMTP e-mail channel against a real aiosmtpd server, and the unsubscribe tokens."""

from __future__ import annotations

import asyncio
import base64
import email
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from channels.base import ChannelError, DeliveryUncertain, Message
from channels.email import SMTPEmailChannel, SMTPServer
from channels.unsubscribe import InvalidToken, make_token, read_token, unsubscribe_url
from worker.settings import Settings

SECRET = "test-secret"
BASE = "https://care.example.com"
USER, PASSWORD = "care@dealer.example", "p@ss:w/rd %#?"
USER_URL, PASSWORD_URL = "care%40dealer.example", "p%40ss%3Aw%2Frd%20%25%23%3F"


class Server:
    """An aiosmtpd handler that keeps what it accepts, or answers as a test tells it to."""

    def __init__(
        self,
        rcpt: str | None = None,
        mail: str | None = None,
        data: str | None = None,
        drop_in_data: bool = False,
        stall_in_data: float = 0.0,
    ) -> None:
        self.rcpt, self.mail, self.data = rcpt, mail, data
        self.drop_in_data, self.stall_in_data = drop_in_data, stall_in_data
        self.received: list[tuple[Any, EmailMessage, bool]] = []

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        return self.mail or "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt:
            return self.rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.drop_in_data:
            server.transport.close()
        await asyncio.sleep(self.stall_in_data)
        if self.data:
            return self.data
        mail = email.message_from_bytes(envelope.content, policy=policy.default)
        self.received.append((envelope, mail, session.ssl is not None))
        return "250 OK: queued"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[Callable[..., int]]:
    """Starts aiosmtpd servers on free local ports; returns the port."""
    running: list[Controller] = []

    def start(handler: Server, **kwargs: Any) -> int:
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
        controller.start()
        running.append(controller)
        return int(controller.port)

    yield start
    for controller in running:
        controller.stop()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (needs the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    key, crt = folder / "key.pem", folder / "cert.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    extension = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(crt)]
    subprocess.run(["openssl", *request, *extension, *files], check=True, capture_output=True)
    return crt, key


def server_tls(cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    return context


def channel(
    url: str, base: str | None = BASE, timeout: float = 5.0, **kwargs: Any
) -> SMTPEmailChannel:
    settings = Settings(
        smtp_url=url,
        public_base_url=base,
        secret_key=SECRET,
        smtp_timeout_s=timeout,
        email_from="星辰汽车 <care@dealer.example>",
    )
    if not kwargs:
        return SMTPEmailChannel.from_settings(settings, engine=None)  # type: ignore[arg-type]
    return SMTPEmailChannel(
        SMTPServer.from_url(url),
        sender=settings.email_from,
        secret_key=SECRET,
        public_base_url=base,
        timeout=timeout,
        **kwargs,
    )


def message(**overrides: Any) -> Message:
    values: dict[str, Any] = {
        "delivery_id": 7,
        "channel": "email",
        "recipient": "wang.wei@example.cn",
        "customer_id": 42,
        "campaign": "first-service",
        "priority": 60,
        "subject": "首保提醒：您的爱车已行驶 4600 公里",
        "body": "王先生，您好！\n您的爱车 <A6L> & 保养 即将到期。\n\n请致电 400-000-0000 预约。",
    }
    return Message(**{**values, **overrides})


def test_it_delivers_text_and_html_alternatives_with_chinese_intact(smtp: Callable[..., int]):
    server = Server()
    receipt = channel(f"smtp://127.0.0.1:{smtp(server)}").send(message())
    ((envelope, mail, _),) = server.received
    assert envelope.mail_from == "care@dealer.example"
    assert envelope.rcpt_tos == ["wang.wei@example.cn"]
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["Subject"] == "首保提醒：您的爱车已行驶 4600 公里"
    assert mail["From"].addresses[0].display_name == "星辰汽车"
    assert mail["To"] == "wang.wei@example.cn"
    assert mail["Date"].datetime.tzinfo is not None
    assert receipt.provider_id == mail["Message-ID"]
    assert mail["Message-ID"].endswith("@dealer.example>")
    text = mail.get_body(("plain",)).get_content()
    assert text.startswith(message().body + "\n\n")
    assert f"{BASE}/unsubscribe/" in text
    page = mail.get_body(("html",)).get_content()
    assert "<p>王先生，您好！<br>\n您的爱车 &lt;A6L&gt; &amp; 保养 即将到期。</p>" in page
    assert "<p>请致电 400-000-0000 预约。</p>" in page
    assert b"\xe7\x8e\x8b" not in envelope.content  # 7-bit on the wire: no 8BITMIME needed


def test_it_links_a_one_click_unsubscribe_for_the_customer(smtp: Callable[..., int]):
    server = Server()
    channel(f"smtp://127.0.0.1:{smtp(server)}").send(message(customer_id=42))
    ((envelope, mail, _),) = server.received
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = mail["List-Unsubscribe"].strip("<>")
    assert f"List-Unsubscribe: <{url}>\r\n".encode() in envelope.content  # not an encoded word
    assert url.startswith(f"{BASE}/unsubscribe/")
    assert read_token(SECRET, url.rpartition("/")[2]) == (42, "email")
    assert f'<a href="{url}">' in mail.get_body(("html",)).get_content()


@pytest.mark.parametrize("base", [None, "", "ftp://dealer.example", "https://经销商.example"])
def test_without_a_public_url_for_the_unsubscribe_link_the_channel_refuses_to_start(
    base: str | None,
):
    with pytest.raises(ValueError, match="MILEPOST_PUBLIC_BASE_URL"):
        channel("smtp://127.0.0.1:2525", base=base)


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER
    return AuthResult(success=ok and auth_data.password.decode() == PASSWORD, handled=False)


# Plain-text AUTH is only for these tests; the TLS tests below log in the way servers insist on.
PLAIN_AUTH = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
plain_auth_warning = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@plain_auth_warning
def test_it_logs_in_with_the_url_encoded_user_and_password(smtp: Callable[..., int]):
    server = Server()
    port = smtp(server, **PLAIN_AUTH)
    url = f"smtp://{USER_URL}:{PASSWORD_URL}@127.0.0.1:{port}?starttls=off"
    channel(url).send(message())
    assert len(server.received) == 1


@plain_auth_warning
def test_with_credentials_it_refuses_a_server_that_offers_no_starttls(smtp: Callable[..., int]):
    # A server (or someone in between) that leaves STARTTLS out never gets the password.
    server, tried = Server(), []

    def recording(*args: Any) -> AuthResult:
        tried.append(args[-1])
        return authenticator(*args)

    port = smtp(server, authenticator=recording, auth_required=False, auth_require_tls=False)
    with pytest.raises(ChannelError) as caught:
        channel(f"smtp://{USER_URL}:{PASSWORD_URL}@127.0.0.1:{port}").send(message())
    assert (caught.value.permanent, caught.value.code) == (False, "smtp-unsupported")
    assert server.received == [] and tried == []


@plain_auth_warning
def test_a_refused_login_is_transient_and_names_the_setting(smtp: Callable[..., int]):
    port = smtp(Server(), **PLAIN_AUTH)
    with pytest.raises(ChannelError) as caught:
        channel(f"smtp://{USER_URL}:wrong@127.0.0.1:{port}?starttls=off").send(message())
    assert (caught.value.permanent, caught.value.code) == (False, "smtp-535")
    assert "MILEPOST_SMTP_URL" in str(caught.value) and "wrong" not in str(caught.value)


@pytest.mark.parametrize(
    ("server", "permanent", "code"),
    [
        (Server(rcpt="550 5.1.1 <wang.wei@example.cn>: no such user"), True, "smtp-550"),
        (Server(rcpt="451 4.3.0 try again later"), False, "smtp-451"),
        (Server(data="554 5.7.1 rejected as spam"), True, "smtp-554"),
        (Server(data="452 4.3.1 mailbox full, try later"), False, "smtp-452"),
        (
            Server(mail="553 5.7.1 sender not allowed"),
            False,
            "smtp-553",
        ),  # our setup, not this mail
    ],
)
def test_smtp_replies_decide_permanent_or_transient(
    smtp: Callable[..., int], server: Server, permanent: bool, code: str
):
    with pytest.raises(ChannelError) as caught:
        channel(f"smtp://127.0.0.1:{smtp(server)}").send(message())
    assert not isinstance(caught.value, DeliveryUncertain)
    assert (caught.value.permanent, caught.value.code) == (permanent, code)
    assert "wang.wei@example.cn" not in str(caught.value)  # addresses are masked


def test_a_server_that_is_down_is_transient():
    with pytest.raises(ChannelError) as caught:
        channel(f"smtp://127.0.0.1:{free_port()}").send(message())
    assert (caught.value.permanent, caught.value.code) == (False, "smtp-connect")


@pytest.mark.parametrize(
    "server", [Server(drop_in_data=True), Server(stall_in_data=3.0)], ids=["disconnect", "timeout"]
)
def test_losing_the_server_during_data_is_uncertain(smtp: Callable[..., int], server: Server):
    with pytest.raises(DeliveryUncertain) as caught:
        channel(f"smtp://127.0.0.1:{smtp(server)}", timeout=0.5).send(message())
    assert caught.value.permanent is False


@pytest.mark.parametrize("query", ["", "?starttls=required"])
def test_it_upgrades_to_starttls_when_offered_and_authenticates_over_it(
    smtp: Callable[..., int], cert: tuple[Path, Path], query: str
):
    server = Server()
    port = smtp(
        server, tls_context=server_tls(cert), authenticator=authenticator, auth_required=True
    )  # and AUTH only after STARTTLS, aiosmtpd's default
    trusted = ssl.create_default_context(cafile=str(cert[0]))
    url = f"smtp://{USER_URL}:{PASSWORD_URL}@127.0.0.1:{port}{query}"
    channel(url, tls_context=trusted).send(message())
    ((_, _, encrypted),) = server.received
    assert encrypted


def test_it_never_falls_back_to_plaintext_after_a_bad_certificate(
    smtp: Callable[..., int], cert: tuple[Path, Path]
):
    server = Server()
    port = smtp(server, tls_context=server_tls(cert))
    with pytest.raises(ChannelError) as caught:
        channel(f"smtp://127.0.0.1:{port}").send(message())  # the system CAs don't know it
    assert (caught.value.permanent, caught.value.code) == (False, "smtp-connect")
    assert server.received == []


def test_it_speaks_implicit_tls_for_smtps(smtp: Callable[..., int], cert: tuple[Path, Path]):
    server = Server()
    port = smtp(server, ssl_context=server_tls(cert))
    trusted = ssl.create_default_context(cafile=str(cert[0]))
    channel(f"smtps://127.0.0.1:{port}", tls_context=trusted).send(message())
    assert len(server.received) == 1


def test_starttls_required_refuses_a_server_without_it(smtp: Callable[..., int]):
    server = Server()
    with pytest.raises(ChannelError) as caught:
        channel(f"smtp://127.0.0.1:{smtp(server)}?starttls=required").send(message())
    assert (caught.value.permanent, caught.value.code) == (False, "smtp-unsupported")
    assert server.received == []


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"recipient": "not-an-address"}, "invalid-address"),
        ({"recipient": "a@example.com\r\nBcc: b@example.com"}, "invalid-address"),
        ({"subject": None}, "bad-subject"),
        ({"subject": "two\nlines"}, "bad-subject"),
    ],
)
def test_unsendable_messages_fail_permanently_before_connecting(
    overrides: dict[str, Any], code: str
):
    with pytest.raises(ChannelError) as caught:
        channel(f"smtp://127.0.0.1:{free_port()}").send(message(**overrides))
    assert (caught.value.permanent, caught.value.code) == (True, code)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # With a user, STARTTLS is required unless ?starttls=off says otherwise.
        (
            "smtp://u:p@mail.example.com:587",
            ("mail.example.com", 587, "starttls-required", "u", "p"),
        ),
        ("smtp://u:p@relay:25?starttls=off", ("relay", 25, "plain", "u", "p")),
        (
            "smtp://u:p@mail.example.com:587?starttls=required",
            ("mail.example.com", 587, "starttls-required", "u", "p"),
        ),
        ("smtps://u:p@mail.example.com:465", ("mail.example.com", 465, "tls", "u", "p")),
        ("smtps://mail.example.com", ("mail.example.com", 465, "tls", None, None)),
        ("smtp://relay:25", ("relay", 25, "starttls", None, None)),
        (
            f"smtp://{USER_URL}:{PASSWORD_URL}@h:2525",
            ("h", 2525, "starttls-required", USER, PASSWORD),
        ),
    ],
)
def test_smtp_urls_parse(url: str, expected: tuple[Any, ...]):
    s = SMTPServer.from_url(url)
    assert (s.host, s.port, s.security, s.username, s.password) == expected
    assert "p@ss" not in repr(s)


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.com",
        "smtp://:25",
        "smtp://h:port",
        "smtp://h?starttls=maybe",
        "smtps://h?starttls=required",
        "smtps://h?starttls=off",
        "smtp://h?tls=1",
        "smtp://u:%E4%B8%AD@h",
    ],
)
def test_bad_smtp_urls_name_the_variable(url: str):
    with pytest.raises(ValueError, match="MILEPOST_SMTP_URL"):
        SMTPServer.from_url(url)


def test_unsubscribe_tokens_round_trip():
    for customer, chan in [(0, "email"), (42, "email"), (10**12, "sms")]:
        assert read_token(SECRET, make_token(SECRET, customer, chan)) == (customer, chan)
    assert make_token(SECRET, 42) == make_token(SECRET, 42, "email")
    assert unsubscribe_url(BASE + "/", "t") == f"{BASE}/unsubscribe/t"


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: make_token("another-secret", 42),  # forged with another key
        lambda t: encode(b"42:sms") + "." + t.partition(".")[2],  # channel changed
        lambda t: encode(b"43:email") + "." + t.partition(".")[2],  # customer changed
        lambda t: t[:-5],  # cut short in a mail client
        lambda t: t.partition(".")[0],  # no signature
        lambda t: t.replace(".", "!"),
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "",
    ],
    ids=["forged", "channel", "customer", "truncated", "unsigned", "garbled", "flipped", "empty"],
)
def test_tampered_unsubscribe_tokens_are_rejected(tamper: Callable[[str], str]):
    with pytest.raises(InvalidToken):
        read_token(SECRET, tamper(make_token(SECRET, 42, "email")))


@pytest.mark.parametrize("base", ["care.example.com", "https://车.example.com"])
def test_a_public_url_that_cannot_be_a_header_is_refused_at_start(base: str):
    with pytest.raises(ValueError, match="MILEPOST_PUBLIC_BASE_URL"):
        channel("smtp://h:25", base=base)
