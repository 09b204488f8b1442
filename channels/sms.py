"""SMS through Twilio's official SDK: one create call per message, errors mapped to retry or not.

Sending is not idempotent: once the request may have reached Twilio (a read timeout, a lost
connection, a 5xx) the message may be on its way, so that raises DeliveryUncertain, never a
retry. Only a refused connection (nothing was sent), 429 and 401 are worth trying again.
"""

from __future__ import annotations

import logging
import re
from http.client import HTTPException
from typing import Any

from sqlalchemy import Engine
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client

from channels.base import ChannelError, DeliveryUncertain, Message, Receipt
from channels.privacy import mask_phone, mask_text
from channels.twilio_http import NotSent, TimeoutHttpClient

log = logging.getLogger("milepost.channels.sms")

OPTED_OUT_CODE = "21610"  # the recipient replied STOP: record the opt-out, never retry
INVALID_NUMBER_CODE = "21211"
TOO_MANY_REQUESTS_CODE = "20429"
MAX_VALIDITY_S = 36000  # Twilio accepts 1..36000 seconds
_BASE_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


class TwilioSMSChannel:
    """Sends each message with one Messages.create call; the Twilio message SID is the receipt.

    The status callback URL names the delivery (``…/twilio/status?delivery=42``): Twilio may
    call back before the worker has recorded the SID, or after a worker died without recording
    it, and the delivery id still finds the row. Twilio signs the URL with its query.
    """

    name = "sms"

    def __init__(
        self,
        client: Client,
        *,
        sender: str | None = None,
        messaging_service_sid: str | None = None,
        validity_s: int = 4 * 3600,
        public_base_url: str | None = None,
    ) -> None:
        if not sender and not messaging_service_sid:
            raise ValueError("set MILEPOST_TWILIO_FROM or MILEPOST_TWILIO_MESSAGING_SERVICE_SID")
        if not 1 <= validity_s <= MAX_VALIDITY_S:
            raise ValueError(f"MILEPOST_SMS_VALIDITY_S must be 1..{MAX_VALIDITY_S} seconds")
        if public_base_url and not _BASE_URL.fullmatch(public_base_url):
            raise ValueError("MILEPOST_PUBLIC_BASE_URL must be an http(s):// URL")
        self.client = client
        self.sender = sender
        self.messaging_service_sid = messaging_service_sid
        self.validity_s = validity_s
        base = public_base_url.rstrip("/") if public_base_url else None
        # + the delivery id: each message's status callback URL names its ledger row.
        self.status_callback_prefix = f"{base}/twilio/status?delivery=" if base else None

    @classmethod
    def from_settings(cls, settings: Any, engine: Engine) -> TwilioSMSChannel:
        """The channel configured by the MILEPOST_TWILIO_* settings."""
        if not settings.twilio_auth_token:
            raise ValueError("MILEPOST_TWILIO_AUTH_TOKEN is unset")
        api_base = settings.twilio_api_base
        if api_base and not _BASE_URL.fullmatch(api_base):
            raise ValueError("MILEPOST_TWILIO_API_BASE must be like http://127.0.0.1:8099")
        if settings.twilio_timeout_s <= 0:
            raise ValueError("MILEPOST_TWILIO_TIMEOUT_S must be more than 0")
        http = TimeoutHttpClient(settings.twilio_timeout_s, api_base)
        client = Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http)
        return cls(
            client,
            sender=settings.twilio_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            validity_s=settings.sms_validity_s,
            public_base_url=settings.public_base_url,
        )

    def warm(self) -> None:
        """Import the SDK's Messages resource (~3 MB of modules, loaded on first use)."""
        self.client.messages  # noqa: B018

    def send(self, message: Message) -> Receipt:
        """Ask Twilio to send ``message``; raises ChannelError or DeliveryUncertain."""
        options: dict[str, Any] = {"validity_period": self.validity_s}
        if self.messaging_service_sid:  # the service picks the sender from its pool
            options["messaging_service_sid"] = self.messaging_service_sid
        else:
            options["from_"] = self.sender
        if self.status_callback_prefix:
            options["status_callback"] = f"{self.status_callback_prefix}{message.delivery_id}"
        try:
            created = self.client.messages.create(
                to=message.recipient, body=message.body, **options
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            error = _rejected(exc, message.recipient, mask_phone(message.recipient))
            raise self._failed(message, error) from exc
        except (HTTPException, OSError) as exc:
            raise self._failed(message, _network(exc, mask_phone(message.recipient))) from exc
        except ValueError as exc:  # a 2xx whose body is not the JSON expected: it was accepted
            who = mask_phone(message.recipient)
            why = f"unreadable answer from Twilio for {who}: {type(exc).__name__}"
            raise self._failed(message, DeliveryUncertain(why, code="twilio-answer")) from exc
        # DEBUG: the ledger records every outcome; a line per SMS at INFO floods the worker's log.
        log.debug("sms %s: queued as %s", message.delivery_id, created.sid)
        return Receipt(provider_id=created.sid, status="sent")

    def _failed(self, message: Message, error: ChannelError) -> ChannelError:
        level = logging.WARNING if isinstance(error, DeliveryUncertain) else logging.INFO
        log.log(level, "sms %s: %s", message.delivery_id, error)
        return error


def _rejected(exc: Exception, recipient: str, who: str) -> ChannelError:
    """The ChannelError for an HTTP error answer from Twilio."""
    status = int(getattr(exc, "status", 0) or 0)
    code = str(getattr(exc, "code", None) or status)
    said = mask_text(str(getattr(exc, "msg", None) or getattr(exc, "detail", None) or ""))
    said = said.replace(recipient, who)
    if code == OPTED_OUT_CODE:
        why = f"{who} has opted out of SMS (replied STOP): record the opt-out, do not retry"
        return ChannelError(why, permanent=True, code=code)
    if status == 429 or code == TOO_MANY_REQUESTS_CODE:
        return ChannelError(f"Twilio rate limit, retry later: {said}"[:200], code=code)
    if status >= 500:
        why = f"Twilio answered {status}, the message may have gone out: {said}"
        return DeliveryUncertain(why[:200], code=code)
    if status == 401:  # our credentials, not this message: retry once the operator fixes them
        hint = "check MILEPOST_TWILIO_ACCOUNT_SID and MILEPOST_TWILIO_AUTH_TOKEN"
        return ChannelError(f"Twilio refused the credentials; {hint}", code=code)
    return ChannelError(
        f"Twilio rejected the SMS ({status}): {said}"[:200], permanent=True, code=code
    )


def _network(exc: Exception, who: str) -> ChannelError:
    """Transient if the request never left; DeliveryUncertain once Twilio may have it."""
    if isinstance(exc, NotSent):  # refused, DNS, connect timeout, proxy, TLS: nothing was sent
        why = f"Twilio unreachable, nothing was sent; it is retried: {exc}"
        return ChannelError(why[:200], code="twilio-connect")
    if isinstance(exc, TimeoutError):
        why = f"no answer from Twilio in time for {who}; the message may have gone out"
        return DeliveryUncertain(why, code="twilio-timeout")
    why = f"connection to Twilio lost ({type(exc).__name__}) for {who}; it may have gone out"
    return DeliveryUncertain(why, code="twilio-connection-lost")
