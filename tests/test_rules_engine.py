"""The Evaluator on the real durable_rules: same meaning as Condition.test, none of its traps."""

from __future__ import annotations

import gc
import random
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import engine
from rules.campaign import Campaign, Step, load_campaigns
from rules.catalog import TIERS
from rules.conditions import AllOf, AnyOf, Compare, Condition, Not, compile_predicate
from rules.durable_json import MAX_GROUPS, compile_condition
from rules.engine import Evaluator

CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"


def campaign(id: str, when: Condition, *, subject: str = "vehicle", priority: int = 50) -> Campaign:
    return Campaign(
        id=id,
        name=id,
        subject=subject,
        when=when,
        once="ever",
        every_days=None,
        priority=priority,
        marketing=True,
        quiet_hours=None,
        steps=(Step(0, "sms", "x/sms"),),
        examples=(),
        path=Path(f"{id}.yaml"),
        line=1,
    )


def live_rulesets() -> int:
    return len(engine._get_host()._ruleset_directory)


AGE = "vehicle.age_days"
age: dict[str, Any] = {"vehicle": {"age_days": 5}}
absent: dict[str, Any] = {"vehicle": {"visits": 1}}

# (condition, facts, matches): every operator, absent facts, nesting, negation pushed down.
CASES = [
    (Compare(AGE, "eq", 5), age, True),
    (Compare(AGE, "eq", 5), absent, False),
    (Compare(AGE, "ne", 5), age, False),
    (Compare(AGE, "ne", 4), age, True),
    (Compare(AGE, "ne", 4), absent, False),
    (Compare(AGE, "lt", 6), age, True),
    (Compare(AGE, "lt", 5), age, False),
    (Compare(AGE, "lt", 6), absent, False),
    (Compare(AGE, "lte", 5), age, True),
    (Compare(AGE, "gt", 4), age, True),
    (Compare(AGE, "gt", 5), age, False),
    (Compare(AGE, "gte", 5), age, True),
    (Compare(AGE, "gte", 6), absent, False),
    (Compare(AGE, "between", (5, 7)), age, True),
    (Compare(AGE, "between", (1, 5)), age, True),
    (Compare(AGE, "between", (6, 7)), age, False),
    (Compare(AGE, "between", (1, 9)), absent, False),
    (Compare(AGE, "in", (1, 5, 9)), age, True),
    (Compare(AGE, "in", (1, 9)), age, False),
    (Compare(AGE, "in", (1, 9)), absent, False),
    (Compare(AGE, "not_in", (1, 9)), age, True),
    (Compare(AGE, "not_in", (5,)), age, False),
    (Compare(AGE, "not_in", (1, 9)), absent, False),
    (Compare(AGE, "exists", True), age, True),
    (Compare(AGE, "exists", True), absent, False),
    (Compare(AGE, "exists", False), absent, True),
    (Compare(AGE, "exists", False), {}, True),
    (Compare(AGE, "exists", False), age, False),
    (Compare("vehicle.service_booked", "eq", False), {"vehicle": {"service_booked": False}}, True),
    (Compare("vehicle.service_booked", "ne", True), {"vehicle": {"service_booked": False}}, True),
    (Compare("customer.tier", "in", ("gold", "diamond")), {"customer": {"tier": "gold"}}, True),
    (Compare("customer.tier", "ne", "gold"), {"customer": {"tier": "silver"}}, True),
    (
        Compare("customer.max_repair_amount", "gte", 5000),
        {"customer": {"max_repair_amount": 5000.0}},
        True,
    ),
    (
        Compare("customer.max_repair_amount", "lt", 5000),
        {"customer": {"max_repair_amount": 4999.5}},
        True,
    ),
    (Not(Compare(AGE, "eq", 5)), absent, True),
    (Not(Compare(AGE, "eq", 5)), age, False),
    (Not(Compare(AGE, "ne", 5)), absent, True),
    (Not(Compare(AGE, "ne", 5)), age, True),
    (Not(Compare(AGE, "lt", 5)), absent, True),
    (Not(Compare(AGE, "lt", 5)), age, True),
    (Not(Compare(AGE, "gte", 5)), age, False),
    (Not(Compare(AGE, "between", (1, 4))), age, True),
    (Not(Compare(AGE, "between", (1, 9))), age, False),
    (Not(Compare(AGE, "between", (1, 9))), absent, True),
    (Not(Compare(AGE, "in", (1, 9))), age, True),
    (Not(Compare(AGE, "in", (1, 9))), absent, True),
    (Not(Compare(AGE, "in", (5, 9))), age, False),
    (Not(Compare(AGE, "not_in", (1, 9))), age, False),
    (Not(Compare(AGE, "not_in", (1, 9))), absent, True),
    (Not(Compare(AGE, "exists", True)), absent, True),
    (Not(Compare(AGE, "exists", False)), absent, False),
    (Not(Not(Compare(AGE, "eq", 5))), absent, False),
    (
        AllOf((Compare(AGE, "gte", 1), Compare("vehicle.visits", "eq", 1))),
        {"vehicle": {"age_days": 5, "visits": 1}},
        True,
    ),
    (AllOf((Compare(AGE, "gte", 1), Compare("vehicle.visits", "eq", 1))), absent, False),
    (AnyOf((Compare(AGE, "gte", 1), Compare("vehicle.visits", "eq", 1))), absent, True),
    (AnyOf((Compare(AGE, "gte", 9), Compare("vehicle.visits", "eq", 2))), absent, False),
    (Not(AllOf((Compare(AGE, "gte", 1), Compare("vehicle.visits", "eq", 1)))), absent, True),
    (Not(AnyOf((Compare(AGE, "gte", 1), Compare("vehicle.visits", "eq", 1)))), absent, False),
    (Not(AnyOf((Compare(AGE, "exists", True), Compare("vehicle.visits", "eq", 2)))), absent, True),
    (
        AllOf(
            (
                AnyOf((Compare(AGE, "eq", 9), Not(Compare("vehicle.visits", "exists", True)))),
                Not(AnyOf((Compare("customer.tier", "eq", "none"), Compare(AGE, "lt", 3)))),
            )
        ),
        {"vehicle": {"age_days": 9}, "customer": {"tier": "gold"}},
        True,
    ),
    (AllOf(()), absent, True),
    (AnyOf(()), absent, False),
]


@pytest.mark.parametrize(("condition", "facts", "expected"), CASES)
def test_durable_rules_decides_like_condition_test(
    condition: Condition, facts: dict[str, Any], expected: bool
) -> None:
    assert condition.test(facts) is expected
    with Evaluator([campaign("c", condition)]) as evaluator:
        assert [c.id for c in evaluator.decide(facts)] == (["c"] if expected else [])
        assert [c.id for c in evaluator.matches(facts, customer_campaigns=True)] == (
            ["c"] if expected else []
        )
        assert evaluator.disagreements == 0


def test_matches_sorts_by_priority_then_id_and_skips_customer_campaigns_unless_asked() -> None:
    anything = Compare("customer.tier", "exists", True)
    campaigns = [
        campaign("b", anything, priority=10),
        campaign("a", anything, priority=10),
        campaign("top", anything, priority=90),
        campaign("birthday", anything, subject="customer", priority=50),
    ]
    facts = {"customer": {"tier": "gold"}}
    with Evaluator(campaigns) as evaluator:
        ids = [c.id for c in evaluator.matches(facts, customer_campaigns=True)]
        assert ids == ["top", "birthday", "a", "b"]
        assert [c.id for c in evaluator.matches(facts, customer_campaigns=False)] == [
            "top",
            "a",
            "b",
        ]
        assert evaluator.predicate_only(facts, customer_campaigns=False) == evaluator.matches(
            facts, customer_campaigns=False
        )


def test_more_than_1024_evaluations_do_not_exhaust_durable_rules_state() -> None:
    when = Compare(AGE, "between", (100, 200))
    with Evaluator([campaign("c", when)]) as evaluator:
        hits = 0
        for n in range(3000):  # matching and non-matching, all distinct
            facts = {"vehicle": {"age_days": n % 300, "visits": n}}
            hits += len(evaluator.matches(facts, customer_campaigns=True))
            hits += len(evaluator.decide(facts))
        assert hits == 2 * 10 * 101


def test_the_default_campaigns_agree_with_their_conditions_on_random_facts() -> None:
    campaigns = load_campaigns(CAMPAIGNS).campaigns
    rnd = random.Random(7)
    with Evaluator(campaigns) as evaluator:
        for _ in range(1500):
            facts = random_facts(rnd)
            primary = rnd.random() < 0.7
            expected = [
                c.id
                for c in evaluator.campaigns
                if (primary or c.subject == "vehicle") and c.when.test(facts)
            ]
            assert [c.id for c in evaluator.matches(facts, customer_campaigns=primary)] == expected
        assert evaluator.disagreements == 0


def random_facts(rnd: random.Random) -> dict[str, Any]:
    """Facts near the default campaigns' thresholds, about a fifth of them absent."""
    values: dict[str, dict[str, Any]] = {
        "customer": {
            "tier": rnd.choice(TIERS),
            "points_cumulative": rnd.choice([0, 1999, 2000, 5000]),
            "days_to_birthday": rnd.choice([0, 1, 200]),
            "days_since_last_visit": rnd.choice([100, 364, 365, 800]),
            "open_complaints": rnd.choice([0, 1]),
            "days_since_complaint_closed": rnd.choice([2, 3, 7, 8]),
            "membership_days_left": rnd.choice([-1, 0, 30, 31]),
            "max_repair_amount": rnd.choice([0.0, 4999.5, 5000.0]),
        },
        "vehicle": {
            "age_days": rnd.choice([0, 5, 7, 150, 365, 366, 1825, 3650]),
            "hours_since_delivery": rnd.choice([-5, 0, 24, 25]),
            "projected_km": rnd.choice([0, 4499, 4500, 150000]),
            "first_service_done": rnd.random() < 0.5,
            "days_since_first_service": rnd.choice([2, 3, 7, 8]),
            "days_since_last_service": rnd.choice([6, 7, 14, 165]),
            "km_since_last_service": rnd.choice([0, 4500]),
            "days_since_repair": rnd.choice([2, 3, 15, 16]),
            "declined_items": rnd.choice([0, 1]),
            "warranty_days_left": rnd.choice([-1, 0, 60, 61]),
            "warranty_km_left": rnd.choice([-1, 0, 3000, 3001]),
            "insurance_days_left": rnd.choice([12, 13, 15, 28, 30, 31]),
            "inspection_days_left": rnd.choice([29, 30, 60, 61]),
            "service_booked": rnd.random() < 0.3,
        },
        "today": {"is_holiday": rnd.random() < 0.3, "holiday": "none", "weekday": 1},
    }
    return {
        scope: {k: v for k, v in facts.items() if rnd.random() < 0.8}
        for scope, facts in values.items()
    }


# -- property: for random conditions and facts, test(), the predicate and durable_rules agree --

FACTS: dict[str, st.SearchStrategy[Any]] = {
    "vehicle.age_days": st.integers(-2, 6),
    "vehicle.km_per_day": st.sampled_from([-1.5, 0.0, 2.5, 4.0]),
    "vehicle.service_booked": st.booleans(),
    "customer.tier": st.sampled_from(TIERS),
    "today.holiday": st.sampled_from(["none", "new-year", "spring-festival"]),
}
NUMERIC = ("vehicle.age_days", "vehicle.km_per_day")


@st.composite
def leaves(draw: st.DrawFn) -> Condition:
    fact = draw(st.sampled_from(sorted(FACTS)))
    values = FACTS[fact]
    ops = ["eq", "ne", "in", "not_in", "exists"]
    if fact in NUMERIC:
        ops += ["lt", "lte", "gt", "gte", "between"]
    op = draw(st.sampled_from(ops))
    if op == "exists":
        return Compare(fact, op, draw(st.booleans()))
    if op == "between":
        pair: list[Any] = draw(st.lists(values, min_size=2, max_size=2))
        low, high = sorted(pair)
        return Compare(fact, op, (low, high))
    if op in ("in", "not_in"):
        return Compare(
            fact, op, tuple(dict.fromkeys(draw(st.lists(values, min_size=1, max_size=4))))
        )
    return Compare(fact, op, draw(values))


conditions = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(lambda cs: AllOf(tuple(cs)), st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda cs: AnyOf(tuple(cs)), st.lists(inner, min_size=1, max_size=4)),
        st.builds(Not, inner),
    ),
    max_leaves=24,
)


@st.composite
def fact_sets(draw: st.DrawFn) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name, values in FACTS.items():
        if draw(st.booleans()):
            scope, key = name.split(".")
            facts.setdefault(scope, {})[key] = draw(values)
    return facts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(conditions, min_size=1, max_size=3), st.lists(fact_sets(), min_size=1, max_size=12))
def test_property_python_and_durable_rules_agree(
    whens: list[Condition], facts_list: list[dict[str, Any]]
) -> None:
    campaigns = [campaign(f"c{i}", when) for i, when in enumerate(whens)]
    predicate = compile_predicate(whens)
    with Evaluator(campaigns) as evaluator:
        for facts in facts_list:
            expected = {f"c{i}" for i, when in enumerate(whens) if when.test(facts)}
            assert {f"c{i}" for i in predicate(facts)} == expected
            assert {c.id for c in evaluator.decide(facts)} == expected, compile_condition(whens[0])
            assert {c.id for c in evaluator.matches(facts, customer_campaigns=True)} == expected
        assert evaluator.disagreements == 0


def test_a_condition_over_the_group_limit_is_split_into_rules_that_agree() -> None:
    pairs = [
        AnyOf(
            (
                AllOf((Compare(AGE, "eq", n), Compare("vehicle.visits", "eq", n))),
                AllOf((Compare(AGE, "eq", -n), Compare("vehicle.visits", "eq", -n))),
            )
        )
        for n in range(1, 8)
    ]
    when = AllOf(tuple(pairs))
    assert len(compile_condition(when)) > 1
    rnd = random.Random(3)
    with Evaluator([campaign("big", when)]) as evaluator:
        for _ in range(400):
            facts = {"vehicle": {"age_days": rnd.choice([1, -1]), "visits": rnd.choice([1, -1])}}
            assert bool(evaluator.decide(facts)) == when.test(facts)
        seven = {"vehicle": {"age_days": 1, "visits": 1}}
        assert not when.test(seven) and evaluator.decide(seven) == []
    assert MAX_GROUPS == 15


def test_closing_and_recreating_evaluators_frees_their_rulesets() -> None:
    campaigns = load_campaigns(CAMPAIGNS).campaigns
    before = live_rulesets()
    facts = {"vehicle": {"age_days": 5}}
    for _ in range(300):
        evaluator = Evaluator(campaigns)
        assert [c.id for c in evaluator.matches(facts, customer_campaigns=True)] == [
            "purchase-follow-up"
        ]
        evaluator.close()
        evaluator.close()  # twice is harmless
    forgotten = Evaluator(campaigns)
    assert live_rulesets() == before + len(campaigns)  # one per campaign
    del forgotten
    gc.collect()
    assert live_rulesets() == before


def test_many_campaigns_matching_at_once_and_long_in_lists_work() -> None:
    campaigns = [campaign(f"c{i:03}", Compare(AGE, "ne", -i - 1)) for i in range(120)]
    campaigns.append(campaign("list", Compare(AGE, "in", tuple(range(5, 405, 2)))))
    with Evaluator(campaigns) as evaluator:
        assert len(evaluator.matches({"vehicle": {"age_days": 5}}, customer_campaigns=True)) == 121
        assert len(evaluator.decide({"vehicle": {"age_days": 6}})) == 120


def test_a_closed_evaluator_refuses_work() -> None:
    evaluator = Evaluator([campaign("c", Compare(AGE, "eq", 5))])
    evaluator.close()
    with pytest.raises(RuntimeError, match="closed"):
        evaluator.matches({"vehicle": {"age_days": 5}}, customer_campaigns=True)


def test_dates_are_refused_with_a_clear_error() -> None:
    with (
        Evaluator([campaign("c", Compare(AGE, "exists", True))]) as evaluator,
        pytest.raises(TypeError, match="numbers"),
    ):
        evaluator.decide({"vehicle": {"age_days": date(2026, 1, 1)}})


def test_no_campaigns_match_nothing() -> None:
    with Evaluator([]) as evaluator:
        assert evaluator.matches({"vehicle": {"age_days": 5}}, customer_campaigns=True) == []


def test_threads_share_one_evaluator_safely() -> None:
    when = Compare(AGE, "gte", 50)
    errors: list[BaseException] = []
    with Evaluator([campaign("c", when)]) as evaluator:

        def work(offset: int) -> None:
            try:
                for n in range(400):
                    facts = {"vehicle": {"age_days": (n + offset) % 100}}
                    got = bool(evaluator.matches(facts, customer_campaigns=True))
                    assert got == when.test(facts)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
