"""E-mail over SMTP: one connection per message, text and HTML parts, one-click unsubscribe."""

from __future__ import annotations

import html
import logging
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import Engine

from channels.base import ChannelError, DeliveryUncertain, Message, Receipt
from channels.privacy import mask_email, mask_text
from channels.unsubscribe import make_token, unsubscribe_url

log = logging.getLogger("milepost.channels.email")

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
# The one piece of customer-facing wording here: Message carries no language, so both.
UNSUBSCRIBE_LABEL = "退订 / Unsubscribe"


class _Policy(EmailPolicy):
    # A URL longer than a line would be folded into an RFC 2047 encoded word, which mail
    # clients do not read as a URL: List-Unsubscribe stays on one line (legal up to 998).
    def fold(self, name: str, value: str) -> str:
        if name.lower() == "list-unsubscribe":
            return f"{name}: {value}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() == "list-unsubscribe":
            return self.fold(name, value).encode("ascii")
        return super().fold_binary(name, value)


# 7bit: Chinese bodies go out as base64/quoted-printable, so servers without 8BITMIME take them.
POLICY = _Policy(cte_type="7bit")
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+")


@dataclass(frozen=True)
class SMTPServer:
    """Where and how to reach the SMTP server, parsed from MILEPOST_SMTP_URL."""

    host: str
    port: int
    # "tls" (implicit, smtps://), "starttls" (when offered), "starttls-required", or "plain"
    # (never: an explicit ?starttls=off, for a relay on the same host)
    security: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SMTPServer:
        """``smtp://user:pass@host:587[?starttls=required|off]``, ``smtps://…:465``, ``smtp://host:25``.

        With a user, STARTTLS is required: a password is never sent in the clear because a
        server (or someone in between) left STARTTLS out, unless ``?starttls=off`` says so.
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
        except ValueError as exc:  # the message names the bad port, never the password
            raise ValueError(f"MILEPOST_SMTP_URL: {exc}") from None
        query = parse_qs(parts.query, keep_blank_values=True)
        starttls = query.pop("starttls", ["auto"])[-1]
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("MILEPOST_SMTP_URL must be like smtp://user:pass@mail.example.com:587")
        allowed = {"auto", "required", "off"} if parts.scheme == "smtp" else {"auto"}
        if query or starttls not in allowed:
            raise ValueError("MILEPOST_SMTP_URL takes only ?starttls=required or off, with smtp://")
        if not f"{user or ''}{password or ''}".isascii():  # smtplib's AUTH encodes ASCII only
            raise ValueError("MILEPOST_SMTP_URL: the user and password must be ASCII")
        if parts.scheme == "smtps":
            security = "tls"
        elif starttls == "off":
            security = "plain"
        elif starttls == "required" or user:
            security = "starttls-required"
        else:
            security = "starttls"
        return cls(parts.hostname, port, security, user, password)


class _SMTP(smtplib.SMTP):
    # Set once DATA begins: from then on the server may have taken the message. That includes a
    # drop between the DATA command and its 354, which is rare and safely "uncertain".
    data_started = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        return super().data(msg)


class _SMTPS(_SMTP, smtplib.SMTP_SSL):
    pass


class SMTPEmailChannel:
    """Sends each message through the SMTP server on its own connection."""

    name = "email"

    def __init__(
        self,
        server: SMTPServer,
        *,
        sender: str,
        secret_key: str,
        public_base_url: str | None = None,
        timeout: float = 15.0,
        dealer_name: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        display, address = parseaddr(sender)
        if "@" not in address:
            raise ValueError(f"MILEPOST_EMAIL_FROM: {sender!r} has no address like care@dealer.com")
        self.server = server
        self.envelope_from = address
        self.sender = formataddr((display or dealer_name or "", address))
        self.secret_key = secret_key
        self.timeout = timeout
        # Verifies the server's certificate and name; a failed check is an error, never plaintext.
        self.tls_context = tls_context or ssl.create_default_context()
        # Every e-mail carries a working unsubscribe link and List-Unsubscribe header: without
        # the public address of `milepost api` there is none to give, so nothing is sent.
        if not public_base_url or not re.fullmatch(r"https?://[!-~]+", public_base_url):
            raise ValueError(
                "MILEPOST_PUBLIC_BASE_URL must be the ASCII http(s):// address of `milepost api`"
                " when MILEPOST_SMTP_URL is set: every e-mail carries its unsubscribe link"
            )
        self.public_base_url: str = public_base_url

    @classmethod
    def from_settings(cls, settings: Any, engine: Engine) -> SMTPEmailChannel:
        """The channel configured by MILEPOST_SMTP_URL, MILEPOST_EMAIL_FROM and friends."""
        return cls(
            SMTPServer.from_url(settings.smtp_url),
            sender=settings.email_from,
            secret_key=settings.secret_key,
            public_base_url=settings.public_base_url,
            timeout=settings.smtp_timeout_s,
            dealer_name=settings.dealer_name,
        )

    def compose(self, message: Message) -> EmailMessage:
        """The MIME message for ``message``: headers, text and HTML parts, unsubscribe link."""
        to, subject = message.recipient, message.subject or ""
        if not _ADDRESS.fullmatch(to) or not to.isprintable():
            raise ChannelError("not an e-mail address", permanent=True, code="invalid-address")
        if not subject.strip() or not subject.isprintable():
            raise ChannelError("e-mail needs a 1-line subject", permanent=True, code="bad-subject")
        token = make_token(self.secret_key, message.customer_id, "email")
        url = unsubscribe_url(self.public_base_url, token)
        mail = EmailMessage(policy=POLICY)
        mail["From"] = self.sender
        mail["To"] = to
        mail["Subject"] = subject
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = make_msgid(domain=self.envelope_from.rpartition("@")[2])
        if url:
            # RFC 8058: mail clients POST "List-Unsubscribe=One-Click" to the URL.
            mail["List-Unsubscribe"] = f"<{url}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        body = message.body.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
        mail.set_content(f"{body}\n\n{UNSUBSCRIBE_LABEL}: {url}\n" if url else f"{body}\n")
        mail.add_alternative(_html(body, url), subtype="html")
        return mail

    def send(self, message: Message) -> Receipt:
        """Hand the message to the SMTP server; its Message-ID is the receipt."""
        mail, to = self.compose(message), message.recipient
        conn: _SMTP | None = None
        try:
            conn = self._connect()
            self._handshake(conn)
            conn.send_message(mail, from_addr=self.envelope_from, to_addrs=[to])
        except Exception as exc:
            if conn is not None:
                conn.close()  # no QUIT: the server may be the thing that hangs
            error = _classify(exc, conn is not None and conn.data_started, message)
            if error is None:
                raise
            if isinstance(error, DeliveryUncertain):
                log.warning("email %s: %s", message.delivery_id, error)
            raise error from exc
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()  # the message was accepted; a rude goodbye changes nothing
        msgid = mail["Message-ID"]
        log.info("email %s to %s: accepted as %s", message.delivery_id, mask_email(to), msgid)
        return Receipt(provider_id=msgid)

    def _connect(self) -> _SMTP:
        s = self.server
        if s.security == "tls":
            return _SMTPS(s.host, s.port, timeout=self.timeout, context=self.tls_context)
        return _SMTP(s.host, s.port, timeout=self.timeout)

    def _handshake(self, conn: _SMTP) -> None:
        s = self.server
        if s.security.startswith("starttls"):  # tls is encrypted already; plain stays clear
            conn.ehlo()
            if conn.has_extn("starttls"):
                conn.starttls(context=self.tls_context)
                conn.ehlo()
            elif s.security == "starttls-required":
                raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
        if s.username:
            conn.login(s.username, s.password or "")


def _html(body: str, url: str | None) -> str:
    paragraphs = [p for p in re.split(r"\n[ \t]*\n\s*", body) if p.strip()]
    parts = ["<p>" + html.escape(p).replace("\n", "<br>\n") + "</p>" for p in paragraphs]
    if url:
        parts.append(f'<p><a href="{html.escape(url)}">{html.escape(UNSUBSCRIBE_LABEL)}</a></p>')
    head = '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n<body>\n'
    return head + "\n".join(parts) + "\n</body></html>\n"


def _reply(code: int, text: bytes | str, stage: str, message: Message) -> ChannelError:
    # Servers often quote the address back ("<wang.wei@…>: no such user"): mask the reply too.
    reply = mask_text(text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text))
    who = mask_email(message.recipient)
    # 5xx: "not this message, not like this"; 4xx: "later". A refused MAIL FROM is our setup: retry.
    permanent = 500 <= code < 600 and stage != "MAIL"
    problem = f"SMTP {code} at {stage} for {who}: {reply}"
    return ChannelError(problem[:200], permanent=permanent, code=f"smtp-{code}")


def _classify(exc: Exception, data_started: bool, message: Message) -> ChannelError | None:
    """The ChannelError for what smtplib raised; None for anything that is not SMTP or network."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (0, b"refused"))
        return _reply(code, text, "RCPT", message)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _reply(exc.smtp_code, exc.smtp_error, "MAIL", message)
    if isinstance(exc, smtplib.SMTPDataError):
        return _reply(exc.smtp_code, exc.smtp_error, "DATA", message)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        # Not this message's fault: retry, so the next attempts work once the operator fixes it.
        hint = "check the user and password in MILEPOST_SMTP_URL"
        return ChannelError(f"SMTP login refused; {hint}", code=f"smtp-{exc.smtp_code}")
    said = mask_text(f"{type(exc).__name__}: {exc}")[:150]
    if isinstance(exc, smtplib.SMTPResponseException):  # greeting, HELO: the server, not the mail
        return ChannelError(f"SMTP session refused: {said}", code=f"smtp-{exc.smtp_code}")
    if data_started and isinstance(exc, smtplib.SMTPException | OSError):
        why = f"connection lost during DATA, the server may have the message: {said}"
        return DeliveryUncertain(why, code="smtp-uncertain")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ChannelError(f"SMTP server: {said}", code="smtp-unsupported")
    if isinstance(exc, smtplib.SMTPException | OSError):  # refused, reset, timeout, TLS, DNS
        return ChannelError(f"SMTP server unreachable: {said}", code="smtp-connect")
    return None
