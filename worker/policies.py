"""Send-time policies: checked when a message is about to go, not only when it matched.

Order matters: a message nobody may receive (no address, no consent) is suppressed before it
is deferred, and quiet hours defer before the frequency cap counts it, so a deferred message
competes for the cap on the day it really goes out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worker.settings import Settings, parse_cap

if TYPE_CHECKING:
    from rules.campaign import Campaign
    from worker.runtime import Runtime

ADDRESS = {"sms": "phone", "call": "phone", "email": "email"}
CAPPED_CHANNELS = ("sms", "email")  # call tasks are the call-center's to pace
SENT = ("sent", "delivered", "unknown")  # unknown: it may have reached the customer
WAITING = ("pending", "retry", "deferred", "sending")


@dataclass(frozen=True)
class Decision:
    """`send` (to ``recipient``), `suppressed`, `cancelled` or `deferred` (until ``until``)."""

    status: str
    reason: str | None = None
    recipient: str = ""
    until: datetime | None = None


def check(rt: Runtime, row: dict[str, Any], now: datetime) -> Decision:
    """The first policy that stops this message, or `send`.

    ``row`` is the ledger row with the customer's ``phone``, ``email``, ``timezone``,
    ``consent`` for the row's channel (None: no decision recorded, the dealer's default) and
    ``competing``: the messages that count against its frequency cap (see worker.claims).
    """
    channel = row["channel"]
    campaign = rt.campaigns.get(row["campaign"])
    if campaign is None:
        return Decision("suppressed", "campaign_removed: the campaign file is gone")
    recipient = row[ADDRESS[channel]]
    if not valid_address(channel, recipient):
        return Decision("suppressed", f"invalid_address: no usable {ADDRESS[channel]}")
    if row["consent"] is not None and not row["consent"]:
        return Decision("suppressed", f"no_consent: the customer opted out of {channel}")
    if channel in CAPPED_CHANNELS:
        tz = (_zone(row["timezone"]) if row["timezone"] else None) or rt.settings.tz
        start, end = campaign.quiet_hours or rt.settings.quiet_window
        opens = next_window_start(now, tz, start, end)
        if opens is not None:
            return Decision("deferred", f"quiet_hours: sends from {start:%H:%M}", until=opens)
        if campaign.marketing:
            limit, days, _ = rt.caps.by_channel[channel]
            if row["competing"] >= limit:
                return Decision("suppressed", f"frequency_cap: {limit} per {days} days reached")
    return Decision("send", recipient=recipient)


# E.164: "+", a country code, at most 15 digits; the shortest numbers in use have 7.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def valid_address(channel: str, value: str | None) -> bool:
    """A phone number in E.164 form, or a plausible e-mail address."""
    if not value:
        return False
    if ADDRESS[channel] == "phone":
        # The form only: `milepost import` checked the number against its country's numbering
        # plan (crm.fields.phone) before storing it as E.164, the only way numbers come in.
        # Checking it again here cost a phonenumbers parse, ~150 µs of CPU per message.
        return _E164.fullmatch(value) is not None
    local, at, domain = value.rpartition("@")
    return bool(local and at and "." in domain and " " not in value)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    # A zone the data names but this system does not know: the dealer's, not a crash.
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def in_window(local: time, start: time, end: time) -> bool:
    """Whether ``local`` falls in [start, end); a window with start > end crosses midnight.

    Start equal to end (``00:00-00:00``) is a window open all day: no quiet hours.
    """
    if start == end:
        return True
    if start < end:
        return start <= local < end
    return local >= start or local < end


def next_window_start(now: datetime, tz: ZoneInfo, start: time, end: time) -> datetime | None:
    """None when ``now`` is inside the window, else the next moment the window opens."""
    local = now.astimezone(tz)
    if in_window(local.time(), start, end):
        return None
    opens = datetime.combine(local.date(), start, tz)
    if opens <= local:
        opens = datetime.combine(local.date() + timedelta(days=1), start, tz)
    return opens


def cap(spec: str) -> tuple[int, int]:
    """`2/7d` -> (2, 7)."""
    return parse_cap(spec)


def cap_for(settings: Settings, channel: str) -> tuple[int, int, tuple[str, ...]]:
    """(limit, days, channels counted) of the cap on ``channel``: its own, else the shared one."""
    own = {"sms": settings.frequency_cap_sms, "email": settings.frequency_cap_email}
    spec = own.get(channel)
    if spec:
        return (*parse_cap(spec), (channel,))
    shared = tuple(c for c in CAPPED_CHANNELS if not own.get(c))
    return (*parse_cap(settings.frequency_cap), shared)


@dataclass(frozen=True)
class CapScope:
    """What the frequency cap counts: the marketing campaigns, and for each capped channel
    the channels whose messages count against its cap (itself, or all sharing the cap)."""

    marketing: tuple[str, ...]
    counted: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Caps:
    """The frequency caps under one runtime's settings and campaigns, worked out once (a
    runtime keeps them: Runtime.caps); every delivery reads them."""

    scope: CapScope
    by_channel: dict[str, tuple[int, int, tuple[str, ...]]]  # channel -> cap_for(…)


def caps(settings: Settings, campaigns: Iterable[Campaign]) -> Caps:
    by_channel = {channel: cap_for(settings, channel) for channel in CAPPED_CHANNELS}
    marketing = tuple(sorted(c.id for c in campaigns if c.marketing))
    counted = tuple((channel, cap[2]) for channel, cap in by_channel.items())
    return Caps(CapScope(marketing, counted), by_channel)


def cap_scope(rt: Runtime) -> CapScope:
    """The cap's scope under the runtime's campaigns and settings."""
    return rt.caps.scope


def cap_since(rt: Runtime, now: datetime) -> dict[str, datetime]:
    """For each capped channel, the start of its cap's period (``sms_since``, …)."""
    return {
        f"{channel}_since": now - timedelta(days=days)
        for channel, (_, days, _) in rt.caps.by_channel.items()
    }
