"""The ledger: one row per key whatever happens, on SQLite and PostgreSQL, with facts to render."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from crm.migrate import upgrade
from crm.models import Delivery, table
from rules.campaign import load_campaigns
from rules.catalog import LANGUAGES
from rules.sample import sample_context
from rules.templates import TemplateStore
from worker import ledger
from worker.ledger_batch import LedgerBatch
from worker.stored_facts import kept_facts, narrow

CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"
D = table(Delivery)
DAY = date(2026, 11, 23)
MATCHED = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)
NOW = MATCHED + timedelta(minutes=5)
FACTS = {
    "customer": {"language": "en", "title": "Ms Li", "name": "Li Hua"},
    "vehicle": {"model": "Han"},
}


@pytest.fixture(scope="module")
def campaigns() -> dict:
    return {c.id: c for c in load_campaigns(CAMPAIGNS).campaigns}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        upgrade(url)
        return url
    return str(request.getfixturevalue("pg_url"))


def batch_of(conn, campaigns: dict, vehicles: range) -> LedgerBatch:
    batch = LedgerBatch(conn.dialect, DAY, MATCHED, NOW)
    for vehicle_id in vehicles:
        record = {"vehicle_id": vehicle_id, "customer_id": 1000 + vehicle_id}
        batch.add(campaigns["first-service"], record, FACTS)  # two steps: now, in 7 days
        batch.add(campaigns["birthday"], record, None)  # a customer campaign
    return batch


def test_a_batch_inserted_twice_or_overlapping_makes_each_key_once(
    url: str, campaigns: dict
) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        first = batch_of(conn, campaigns, range(1, 1601)).insert(conn)  # over one VALUES page
    with engine.begin() as conn:
        again = batch_of(conn, campaigns, range(1, 1601)).insert(conn)
        overlap = batch_of(conn, campaigns, range(1501, 1701)).insert(conn)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(D)).scalar_one()
        row = conn.execute(select(D).where(D.c.campaign == "first-service", D.c.step == 1)).first()
        nulls = conn.execute(select(func.count()).where(D.c.facts.is_(None))).scalar_one()
    engine.dispose()
    assert len(first) == 1600 * 3 and again == [] and len(overlap) == 100 * 3
    assert total == 1700 * 3 and len({i for i, _ in first + overlap}) == total
    assert {due for _, due in first} == {MATCHED, MATCHED + timedelta(days=7)}
    assert row is not None and row.due_at == MATCHED + timedelta(days=7) and row.created_at == NOW
    facts = row.facts if isinstance(row.facts, dict) else json.loads(row.facts)
    assert facts == FACTS and row.subject_id == row.vehicle_id and row.status == "pending"
    assert nulls == 1700  # the birthday rows, customer subjects, stored without facts


def test_planned_dicts_insert_like_a_batch(url: str, campaigns: dict) -> None:
    engine = create_engine(url)
    record = {"vehicle_id": 7, "customer_id": 70}
    rows = ledger.plan(campaigns["first-service"], record, FACTS, DAY, MATCHED, NOW)
    with engine.begin() as conn:
        created = ledger.insert(conn, rows)
        assert ledger.insert(conn, rows) == []
        assert ledger.insert(conn, []) == []
    engine.dispose()
    assert [due for _, due in created] == [MATCHED, MATCHED + timedelta(days=7)]


def test_every_campaigns_skip_subjects_reached_within_their_period(
    url: str, campaigns: dict
) -> None:
    engine = create_engine(url)
    inspection, trade_in = campaigns["annual-inspection"], campaigns["trade-in"]  # 90d, 365d
    with engine.begin() as conn:
        for day, campaign, vehicle in ((DAY - timedelta(days=100), inspection, 1),
                                       (DAY - timedelta(days=80), inspection, 2),
                                       (DAY - timedelta(days=100), trade_in, 3),
                                       (DAY, inspection, 4)):  # fmt: skip
            record = {"vehicle_id": vehicle, "customer_id": vehicle}
            ledger.insert(conn, ledger.plan(campaign, record, None, day, MATCHED, NOW))
        seen = ledger.recently_matched_many(
            conn,
            [(inspection, [1, 2, 4, 5]), (trade_in, [3]), (campaigns["first-service"], [1])],
            DAY,
        )
        one = ledger.recently_matched(conn, inspection, [1, 2], DAY)
    engine.dispose()
    assert seen == {"annual-inspection": {2}, "trade-in": {3}}
    assert one == {2}


def test_rows_keep_only_the_facts_their_templates_print_and_still_render() -> None:
    templates = TemplateStore(CAMPAIGNS / "templates")
    for campaign in load_campaigns(CAMPAIGNS).campaigns:
        kept = kept_facts(campaign, templates)
        assert kept is not None
        for language in LANGUAGES:
            full = sample_context(language)
            stored = narrow({k: v for k, v in full.items() if k != "dealer"}, kept)
            assert stored["customer"]["language"] == language
            assert sum(map(len, stored.values())) < 10  # of ~40 facts
            for step in campaign.steps:  # StrictUndefined: a fact missing here would raise
                templates.render(
                    step.template, language, {**stored, "dealer": full["dealer"]}, step.channel
                )


def test_narrowing_keeps_absent_facts_absent() -> None:
    kept = (("customer", ("language", "title")), ("vehicle", ("insurance_days_left",)))
    facts = {"customer": {"language": "zh", "tier": "gold"}, "vehicle": {"model": "Han"}}
    assert narrow(facts, kept) == {"customer": {"language": "zh"}, "vehicle": {}}
    assert narrow(facts, None) is facts
