"""What a sweep did, per campaign: subjects matched, messages queued, calls listed, outcomes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, func, select

from crm.models import Delivery, table

D = table(Delivery)


@dataclass
class CampaignSummary:
    campaign: str
    matched: int = 0
    messages: int = 0
    calls: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def since(
    conn: Connection, start: datetime, until: datetime | None = None
) -> list[CampaignSummary]:
    """Per campaign, the ledger rows created at or after ``start`` (and not after ``until``)."""
    query = (
        select(D.c.campaign, D.c.step, D.c.channel, D.c.status, func.count())
        .where(D.c.created_at >= start)
        .group_by(D.c.campaign, D.c.step, D.c.channel, D.c.status)
    )
    if until is not None:
        query = query.where(D.c.created_at <= until)
    table: dict[str, CampaignSummary] = {}
    for campaign, step, channel, status, count in conn.execute(query):
        row = table.setdefault(campaign, CampaignSummary(campaign))
        if step == 0:
            row.matched += count
        if channel == "call":
            row.calls += count
        else:
            row.messages += count
        row.by_status[status] = row.by_status.get(status, 0) + count
    return sorted(table.values(), key=lambda r: r.campaign)


def status_counts(conn: Connection, start: datetime) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    query = select(D.c.status, func.count()).where(D.c.created_at >= start).group_by(D.c.status)
    for status, count in conn.execute(query):
        counts[status] += count
    return dict(counts)
