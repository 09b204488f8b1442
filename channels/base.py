"""What every channel is: `send(message) -> Receipt`, or a ChannelError."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """A rendered message for one recipient, tied to its ledger row."""

    delivery_id: int
    channel: str
    recipient: str  # E.164 phone or e-mail address
    body: str
    customer_id: int
    campaign: str
    priority: int
    subject: str | None = None
    vehicle_id: int | None = None
    due_by: datetime | None = None
    segments: int | None = None


@dataclass(frozen=True)
class Receipt:
    """What the channel accepted; ``provider_id`` identifies it at the provider."""

    provider_id: str
    status: str = "sent"


class ChannelError(Exception):
    """The channel did not take the message. ``permanent`` says whether a retry can help."""

    def __init__(self, message: str, *, permanent: bool = False, code: str | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class DeliveryUncertain(ChannelError):
    """The message may have gone out (timeout, lost connection, 5xx): mark it unknown, never resend.

    Check for it before ``permanent``: resending could give the customer a second copy.
    """


class Channel(Protocol):
    name: str

    def send(self, message: Message) -> Receipt: ...
