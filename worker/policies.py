"""Send-time policies: checked when a message is about to go, not only when it matched.

Order matters: a message nobody may receive (no address, no consent) is suppressed before it
is deferred, and quiet hours defer before the frequency cap counts it, so a deferred message
competes for the cap on the day it really goes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import phonenumbers
from sqlalchemy import Connection, and_, func, or_, select

from crm.models import Consent, Delivery, table

if TYPE_CHECKING:
    from worker.runtime import Runtime

CS, D = table(Consent), table(Delivery)
ADDRESS = {"sms": "phone", "call": "phone", "email": "email"}
CAPPED_CHANNELS = ("sms", "email")  # call tasks are the call-center's to pace
SENT = ("sent", "delivered", "unknown")


@dataclass(frozen=True)
class Decision:
    """`send` (to ``recipient``), `suppressed` or `deferred` (until ``until``), with a reason."""

    status: str
    reason: str | None = None
    recipient: str = ""
    until: datetime | None = None


def check(
    rt: Runtime, conn: Connection, row: dict[str, Any], customer: Any, now: datetime
) -> Decision:
    """The first policy that stops this message, or `send`."""
    channel = row["channel"]
    campaign = rt.campaigns.get(row["campaign"])
    if campaign is None:
        return Decision("suppressed", "campaign_removed: the campaign file is gone")
    recipient = customer[ADDRESS[channel]]
    if not valid_address(channel, recipient):
        return Decision("suppressed", f"invalid_address: no usable {ADDRESS[channel]}")
    allowed = conn.execute(
        select(CS.c.allowed).where(CS.c.customer_id == row["customer_id"], CS.c.channel == channel)
    ).scalar()
    if allowed is False:
        return Decision("suppressed", f"no_consent: the customer opted out of {channel}")
    if channel in CAPPED_CHANNELS:
        tz = ZoneInfo(customer["timezone"]) if customer["timezone"] else rt.settings.tz
        start, end = campaign.quiet_hours or rt.settings.quiet_window
        opens = next_window_start(now, tz, start, end)
        if opens is not None:
            return Decision("deferred", f"quiet_hours: sends from {start:%H:%M}", until=opens)
        if campaign.marketing and _over_cap(rt, conn, row, now):
            limit, days = cap(rt.settings.frequency_cap)
            return Decision("suppressed", f"frequency_cap: {limit} per {days} days reached")
    return Decision("send", recipient=recipient)


def valid_address(channel: str, value: str | None) -> bool:
    if not value:
        return False
    if ADDRESS[channel] == "phone":
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(value, None))
        except phonenumbers.NumberParseException:
            return False
    local, at, domain = value.rpartition("@")
    return bool(local and at and "." in domain and " " not in value)


def in_window(local: time, start: time, end: time) -> bool:
    """Whether ``local`` is in [start, end); start > end crosses midnight, start == end: all day."""
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
    count, _, period = spec.partition("/")
    return int(count), int(period.rstrip("d"))


def _over_cap(rt: Runtime, conn: Connection, row: dict[str, Any], now: datetime) -> bool:
    """Whether the cap is full once messages sent and higher-ranked messages due are counted.

    Ranking the competitors (priority, then id) instead of first-come makes the outcome the
    same whatever order the workers pick the rows up in: the highest priorities win.
    """
    limit, days = cap(rt.settings.frequency_cap)
    marketing = [c.id for c in rt.campaigns.values() if c.marketing]
    mine = and_(
        D.c.customer_id == row["customer_id"],
        D.c.channel.in_(CAPPED_CHANNELS),
        D.c.campaign.in_(marketing),
        D.c.id != row["id"],
    )
    sent = select(func.count()).where(
        mine, D.c.status.in_(SENT), D.c.sent_at > now - timedelta(days=days)
    )
    ahead = select(func.count()).where(
        mine,
        D.c.status.in_(("pending", "retry", "deferred", "sending")),
        D.c.due_at <= now,
        or_(
            D.c.priority > row["priority"],
            and_(D.c.priority == row["priority"], D.c.id < row["id"]),
        ),
    )
    return int(conn.execute(sent).scalar_one()) + int(conn.execute(ahead).scalar_one()) >= limit
