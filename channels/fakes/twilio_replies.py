"""The fake Twilio's wire: scripted replies, recorded requests, the JSON the real API returns."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from typing import Any

from rules.sms import count_segments, is_gsm7

API_VERSION = "2010-04-01"
_E164 = re.compile(r"\+[1-9]\d{6,14}")

# Twilio error code -> (HTTP status, message as Twilio words it; {to} and {path} are filled in).
ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource {path} was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "An internal server error has occurred"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
}


@dataclass(frozen=True)
class Reply:
    """How the fake answers one request: accept it (201), or a Twilio error, 5xx, delay, reset."""

    status: int = 201
    code: int | None = None  # Twilio error code in the JSON body; None for a plain-text 5xx
    delay_s: float = 0.0  # wait before answering (on top of the server's latency)
    reset: bool = False  # accept, then reset the connection without answering

    @classmethod
    def accept(cls, delay_s: float = 0.0) -> Reply:
        """Create the message; a delay longer than the client's timeout makes it time out."""
        return cls(delay_s=delay_s)

    @classmethod
    def error(cls, code: int, status: int | None = None) -> Reply:
        """A Twilio error JSON: 21211 invalid number, 21610 unsubscribed, 20429 too many (429)…"""
        return cls(status=status or ERRORS.get(code, (400, ""))[0], code=code)

    @classmethod
    def server_error(cls, status: int = 500, json_body: bool = True) -> Reply:
        """A 5xx, with Twilio's JSON (code 20500) or, like a failing gateway, plain text."""
        return cls(status=status, code=20500 if json_body else None)

    @classmethod
    def connection_reset(cls) -> Reply:
        """The message is created, then the connection is reset before any answer."""
        return cls(reset=True)

    @property
    def accepts(self) -> bool:
        """The message is created (and would reach the phone) whatever the client sees."""
        return self.status == 201 or self.reset


@dataclass(frozen=True)
class Request:
    """One request to the Messages endpoint, as the fake received and answered it."""

    account_sid: str  # from the URL
    username: str | None  # the Basic auth user sent, if any
    authorized: bool
    form: dict[str, str]
    status: int
    sid: str | None = None  # set when the message was created

    @property
    def to(self) -> str | None:
        return self.form.get("To")

    @property
    def body(self) -> str | None:
        return self.form.get("Body")


def error_json(code: int, status: int | None = None, **fill: str) -> dict[str, Any]:
    """Twilio's error body: code, message, more_info, status."""
    default_status, text = ERRORS.get(code, (400, "Error {code}"))
    return {
        "code": code,
        "message": text.format_map({"to": "", "path": "", "code": code, **fill}),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status or default_status,
    }


def new_sid(prefix: str = "SM") -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + os.urandom(16).hex()


def segments(body: str) -> int:
    """The segments Twilio would bill for ``body`` (GSM-7 if it fits, else UCS-2)."""
    return count_segments(body, "GSM-7" if is_gsm7(body) else "UCS-2")


@lru_cache(maxsize=2)
def _date(second: int) -> str:
    # Formatting a date costs more than the rest of an answer; it changes once a second.
    return format_datetime(datetime.fromtimestamp(second, UTC))


def message_json(account_sid: str, sid: str, form: dict[str, str]) -> dict[str, Any]:
    """The Message resource Twilio returns on create (its numbers are strings, as Twilio's are)."""
    now = _date(int(time.time()))
    service = form.get("MessagingServiceSid")
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": form.get("Body", ""),
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": service,
        "num_media": "0",
        "num_segments": str(segments(form.get("Body", ""))),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        # Twilio says "accepted" until a Messaging Service has picked the sender.
        "status": "accepted" if service and not form.get("From") else "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": form.get("To"),
        "uri": f"{uri}.json",
    }


def validate(form: dict[str, str]) -> Reply:
    """What the real API checks before it creates a message: an error, or accept."""
    if not form.get("To"):
        return Reply.error(21604)
    if not _E164.fullmatch(form["To"]):
        return Reply.error(21211)
    if not form.get("From") and not form.get("MessagingServiceSid"):
        return Reply.error(21603)
    if not form.get("Body"):
        return Reply.error(21602)
    if len(form["Body"]) > 1600:
        return Reply.error(21617)
    return Reply.accept()
