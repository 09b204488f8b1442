"""The ledger: one row per key whatever happens, on SQLite and PostgreSQL, with facts to render."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, insert, select

from crm.migrate import upgrade
from crm.models import Customer, Delivery, Vehicle, table
from rules.campaign import load_campaigns
from rules.catalog import LANGUAGES
from rules.sample import sample_context
from rules.templates import TemplateStore
from worker import ledger
from worker.ledger_batch import LedgerBatch
from worker.stored_facts import encode, kept_facts, narrow, stored_json

CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"
D, C, V = table(Delivery), table(Customer), table(Vehicle)
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
        due_now = set(conn.execute(select(D.c.id).where(D.c.due_at <= NOW)).scalars())
    engine.dispose()
    # Back come the new rows due now (the SMS and the birthday), not the call in 7 days.
    assert len(first) == 1600 * 2 and again == [] and len(overlap) == 100 * 2
    assert set(first + overlap) == due_now and total == 1700 * 3
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


def test_a_sweep_skips_subjects_whose_match_is_in_the_ledger_or_within_its_period(
    url: str, campaigns: dict
) -> None:
    engine = create_engine(url)
    inspection, trade_in = campaigns["annual-inspection"], campaigns["trade-in"]  # 90d, 365d
    win_back = campaigns["win-back"]  # a customer campaign, 365d
    first, birthday = campaigns["first-service"], campaigns["birthday"]  # once; once a year
    owners = {1: 10, 2: 10, 3: 11, 4: 11, 99: 12}  # vehicle -> customer; 99 is not in 1..4
    with engine.begin() as conn:
        for customer in sorted(set(owners.values())):
            conn.execute(insert(C).values(id=customer, code=f"C{customer}", name="x"))
        for vehicle, customer in owners.items():
            values = {"vin": f"VIN{vehicle:014d}", "make": "BYD", "model": "Han", "year": 2024}
            conn.execute(
                insert(V).values(id=vehicle, customer_id=customer, delivered_at=NOW, **values)
            )
        for ago, campaign, vehicle in (
            (100, inspection, 1),  # before its 90 days
            (80, inspection, 2),
            (10, inspection, 99),  # another batch's vehicle
            (100, trade_in, 3),
            (0, inspection, 4),  # today's own row
            (100, win_back, 1),  # customer 10
            (10, win_back, 99),  # customer 12: not an owner here
            (300, first, 2),  # once per vehicle: whenever it was
            (400, birthday, 3),  # customer 11, last year's
            (20, birthday, 1),  # customer 10, this year's
        ):
            record = {"vehicle_id": vehicle, "customer_id": owners[vehicle]}
            day = DAY - timedelta(days=ago)
            ledger.insert(conn, ledger.plan(campaign, record, None, day, MATCHED, NOW))
        customers = (win_back, [10, 11]), (birthday, [10, 11])
        matched = [(c, range(1, 5)) for c in (inspection, trade_in, first)] + [*customers]
        seen = ledger.in_ledger_in_range(conn, matched, 1, 4, DAY)
        one = ledger.recently_matched(conn, inspection, [1, 2, 99], DAY)
        none = ledger.recently_matched(conn, campaigns["first-service"], [1], DAY)
    engine.dispose()
    assert seen == {
        "annual-inspection": {2, 4},  # today's own row too: a second sweep today adds nothing
        "trade-in": {3},
        "win-back": {10},
        "first-service": {2},
        "birthday": {10},
    }
    assert one == {2, 99} and none == set()


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


_SCOPES = ("customer", "dealer", "today", "vehicle")
_KEYS = ("language", "name", "title", "model", "projected_km", "km_per_day", "is_holiday")
_VALUES = st.one_of(
    st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()
)


@settings(deadline=None)  # the first example of a set of kept facts compiles it
@given(
    facts=st.dictionaries(
        st.sampled_from(_SCOPES), st.dictionaries(st.sampled_from(_KEYS), _VALUES)
    ),
    kept=st.dictionaries(
        st.sampled_from(_SCOPES), st.lists(st.sampled_from(_KEYS), unique=True).map(tuple)
    ).map(lambda scopes: tuple(sorted(scopes.items()))),
)
def test_stored_text_is_the_narrowed_facts_encoded(facts: dict, kept: tuple) -> None:
    assert stored_json(kept)(facts) == encode(narrow(facts, kept))
    assert json.loads(stored_json(kept)(facts)) == narrow(facts, kept)
    assert stored_json(None)(facts) == encode(facts)


def test_stored_text_refuses_what_json_refuses() -> None:
    kept = (("vehicle", ("km_per_day",)),)
    with pytest.raises(ValueError):
        stored_json(kept)({"vehicle": {"km_per_day": float("nan")}})
    with pytest.raises(TypeError):
        stored_json(kept)({"vehicle": {"km_per_day": date(2026, 1, 1)}})
