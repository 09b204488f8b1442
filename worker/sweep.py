"""The sweep: every vehicle's facts against every campaign, as ledger rows, range by range."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dramatiq

from crm.records import id_ranges, load_records
from rules.campaign import Campaign
from rules.facts import derive
from worker import ledger
from worker.runtime import Runtime


def plan_ranges(rt: Runtime, batch: int | None = None) -> list[tuple[int, int]]:
    """The vehicle-id ranges one sweep is split into."""
    with rt.engine.connect() as conn:
        return id_ranges(conn, batch or rt.settings.sweep_batch)


def enqueue_all(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message[Any]]) -> None:
    """Queue ``messages`` in order."""
    for message in messages:
        broker.enqueue(message)


def evaluate_range(
    rt: Runtime, lo: int, hi: int, as_of: str, now: datetime | None = None
) -> list[int]:
    """Match vehicles lo..hi as of ``as_of``; returns the ids of new ledger rows due now."""
    moment = datetime.fromisoformat(as_of)
    now = now or max(datetime.now(UTC), moment)
    local_day = moment.astimezone(rt.settings.tz).date()
    with rt.engine.connect() as conn:
        records = load_records(conn, lo, hi)
    matched: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for record in records:
        facts = derive(
            record,
            moment,
            tz=rt.settings.tz,
            holidays=rt.holidays,
            km_per_day=rt.settings.km_per_day,
        )
        for campaign in rt.evaluator.matches(facts, customer_campaigns=record["is_primary"]):
            matched[campaign.id].append((record, facts))
    rows: list[dict[str, Any]] = []
    with rt.engine.begin() as conn:
        for campaign_id, hits in matched.items():
            campaign = rt.campaigns[campaign_id]
            seen = ledger.recently_matched(
                conn, campaign, (_subject(campaign, r) for r, _ in hits), local_day
            )
            for record, facts in hits:
                if _subject(campaign, record) not in seen:
                    rows.extend(ledger.plan(campaign, record, facts, local_day, moment, now))
        created = ledger.insert(conn, rows)
    return [delivery_id for delivery_id, due_at in created if due_at <= now]


def _subject(campaign: Campaign, record: dict[str, Any]) -> int:
    return int(record["vehicle_id"] if campaign.subject == "vehicle" else record["customer_id"])
