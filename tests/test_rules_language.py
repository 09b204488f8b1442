"""The campaign language: files load into Campaigns, conditions mean what the contract says."""

from __future__ import annotations

import json
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from rules.campaign import Campaign, load_campaigns
from rules.condition_parser import ConditionParser
from rules.conditions import AllOf, AnyOf, Compare, Condition, Not, compile_predicate
from rules.errors import Problems
from rules.examples import run_examples
from rules.holidays import load_holidays
from rules.schema import render
from rules.yamlsource import load_yaml

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGNS = ROOT / "campaigns"

HEAD = """\
id: {id}
name: Test campaign
subject: vehicle
"""


def write_templates(directory: Path, *names: str) -> None:
    """Both languages of each template, e.g. ``x/sms``; ``x/email`` gets a Subject line."""
    for name in names:
        for language in ("zh", "en"):
            path = directory / "templates" / f"{name}.{language}.j2"
            path.parent.mkdir(parents=True, exist_ok=True)
            subject = "Subject: Hello\n\n" if name.endswith("email") else ""
            path.write_text(subject + "Hello {{ customer.title }}", encoding="utf-8")


def load_one(tmp_path: Path, body: str, head: str = HEAD) -> Campaign:
    write_templates(tmp_path, "x/sms", "x/call", "x/email")
    (tmp_path / "c.yaml").write_text(head.format(id="c") + body, encoding="utf-8")
    result = load_campaigns(tmp_path)
    assert not result.errors, [str(e) for e in result.errors]
    [campaign] = result.campaigns
    return campaign


def parse(text: str, subject: str = "vehicle") -> Condition:
    problems = Problems(Path("t.yaml"))
    condition = ConditionParser(problems, subject).parse(load_yaml(text, Path("t.yaml")), 1)
    assert not problems, [str(e) for e in problems.errors]
    assert condition is not None
    return condition


def test_the_default_campaigns_load_and_their_examples_pass() -> None:
    result = load_campaigns(CAMPAIGNS)
    assert result.errors == []
    assert len(result.campaigns) >= 17
    holidays = load_holidays(CAMPAIGNS / "holidays.yaml")
    outcomes = run_examples(result.campaigns, holidays=holidays)
    assert [str(f) for o in outcomes for f in o.failures] == []
    assert all(o.passed == len(o.campaign.examples) for o in outcomes)


def test_a_campaign_file_becomes_a_campaign(tmp_path: Path) -> None:
    campaign = load_one(
        tmp_path,
        """\
when:
  all:
    - vehicle.first_service_done: false
    - any:
        - vehicle.projected_km: {gte: 4500}
        - vehicle.age_days: {gte: 150}
once: per vehicle
priority: 60
marketing: false
quiet_hours: "08:30-21:00"
steps:
  - send: sms
    template: x/sms
  - after: 7d
    unless: vehicle.service_booked
    send: call
    template: x/call
    due: 2d
examples:
  - facts: {vehicle: {first_service_done: false, projected_km: 4600}}
    expect: match
""",
    )
    assert campaign.id == "c" and campaign.subject == "vehicle" and campaign.line == 1
    assert campaign.when == AllOf(
        (
            Compare("vehicle.first_service_done", "eq", False),
            AnyOf(
                (
                    Compare("vehicle.projected_km", "gte", 4500),
                    Compare("vehicle.age_days", "gte", 150),
                )
            ),
        )
    )
    assert (campaign.once, campaign.every_days, campaign.priority) == ("ever", None, 60)
    assert campaign.marketing is False
    assert campaign.quiet_hours == (time(8, 30), time(21, 0))
    first, call = campaign.steps
    assert (first.index, first.channel, first.template, first.after) == (
        0,
        "sms",
        "x/sms",
        timedelta(0),
    )
    assert (call.index, call.channel, call.after, call.due) == (
        1,
        "call",
        timedelta(7),
        timedelta(2),
    )
    assert call.unless == Compare("vehicle.service_booked", "eq", True)
    assert call.line == 17
    [example] = campaign.examples
    assert example.expect is True and example.line == 23
    assert example.facts == {"vehicle": {"first_service_done": False, "projected_km": 4600}}


def test_defaults_priority_50_marketing_no_quiet_hours(tmp_path: Path) -> None:
    campaign = load_one(
        tmp_path, "when: {vehicle.age_days: 5}\nevery: 2w\nsteps: [{send: sms, template: x/sms}]\n"
    )
    assert (campaign.priority, campaign.marketing, campaign.quiet_hours) == (50, True, None)
    assert campaign.every_days == 14


@pytest.mark.parametrize(
    ("repeat", "once", "every_days", "occurrence"),
    [
        ("once: per vehicle", "ever", None, "once"),
        ("once: per year", "year", None, "2026"),
        ("once: per month", "month", None, "2026-11"),
        ("once: per day", "day", None, "2026-11-22"),
        ("every: 180d", "day", 180, "2026-11-22"),
        ("every: 1w", "day", 7, "2026-11-22"),
        ("every: 48h", "day", 2, "2026-11-22"),
    ],
)
def test_repetition_and_occurrence(
    tmp_path: Path, repeat: str, once: str, every_days: int | None, occurrence: str
) -> None:
    body = f"when: {{vehicle.age_days: 5}}\n{repeat}\nsteps: [{{send: sms, template: x/sms}}]\n"
    campaign = load_one(tmp_path, body)
    assert (campaign.once, campaign.every_days) == (once, every_days)
    assert campaign.occurrence(date(2026, 11, 22)) == occurrence


def test_customer_campaigns_repeat_per_customer(tmp_path: Path) -> None:
    head = HEAD.replace("subject: vehicle", "subject: customer")
    body = (
        "when: {customer.days_to_birthday: 0}\nonce: per customer\n"
        "steps: [{send: email, template: x/email}]\n"
    )
    campaign = load_one(tmp_path, body, head)
    assert (campaign.subject, campaign.once, campaign.steps[0].channel) == (
        "customer",
        "ever",
        "email",
    )


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ("vehicle.age_days: 5", Compare("vehicle.age_days", "eq", 5)),
        ("customer.tier: gold", Compare("customer.tier", "eq", "gold")),
        ("vehicle.service_booked", Compare("vehicle.service_booked", "eq", True)),
        ("vehicle.age_days: {ne: 5}", Compare("vehicle.age_days", "ne", 5)),
        ("vehicle.km_per_day: {lt: 40.5}", Compare("vehicle.km_per_day", "lt", 40.5)),
        ("vehicle.age_days: {between: [5, 7]}", Compare("vehicle.age_days", "between", (5, 7))),
        (
            "customer.tier: {in: [gold, diamond]}",
            Compare("customer.tier", "in", ("gold", "diamond")),
        ),
        ("customer.tier: {not_in: [none]}", Compare("customer.tier", "not_in", ("none",))),
        ("vehicle.visits: {exists: false}", Compare("vehicle.visits", "exists", False)),
        (
            "vehicle.age_days: {gte: 5, lt: 9}",
            AllOf((Compare("vehicle.age_days", "gte", 5), Compare("vehicle.age_days", "lt", 9))),
        ),
        (
            "{vehicle.age_days: 5, customer.tier: gold}",
            AllOf((Compare("vehicle.age_days", "eq", 5), Compare("customer.tier", "eq", "gold"))),
        ),
        ("not: {vehicle.age_days: 5}", Not(Compare("vehicle.age_days", "eq", 5))),
        (
            "not: [vehicle.service_booked, {vehicle.visits: 0}]",
            Not(
                AllOf(
                    (
                        Compare("vehicle.service_booked", "eq", True),
                        Compare("vehicle.visits", "eq", 0),
                    )
                )
            ),
        ),
        ("today.holiday: spring-festival", Compare("today.holiday", "eq", "spring-festival")),
    ],
)
def test_condition_syntax(text: str, condition: Condition) -> None:
    assert parse(text) == condition


ABSENT: dict[str, Any] = {"vehicle": {}}

# (condition, facts, expected): every operator, on present and absent facts.
SEMANTICS = [
    ("vehicle.age_days: 5", {"vehicle": {"age_days": 5}}, True),
    ("vehicle.age_days: 5", {"vehicle": {"age_days": 6}}, False),
    ("vehicle.age_days: 5", ABSENT, False),
    ("vehicle.age_days: {ne: 5}", {"vehicle": {"age_days": 6}}, True),
    ("vehicle.age_days: {ne: 5}", {"vehicle": {"age_days": 5}}, False),
    ("vehicle.age_days: {ne: 5}", ABSENT, False),
    ("vehicle.age_days: {lt: 5}", {"vehicle": {"age_days": 4}}, True),
    ("vehicle.age_days: {lt: 5}", {"vehicle": {"age_days": 5}}, False),
    ("vehicle.age_days: {lt: 5}", ABSENT, False),
    ("vehicle.age_days: {lte: 5}", {"vehicle": {"age_days": 5}}, True),
    ("vehicle.age_days: {lte: 5}", {"vehicle": {"age_days": 6}}, False),
    ("vehicle.age_days: {gt: 5}", {"vehicle": {"age_days": 6}}, True),
    ("vehicle.age_days: {gt: 5}", {"vehicle": {"age_days": 5}}, False),
    ("vehicle.age_days: {gte: 5}", {"vehicle": {"age_days": 5}}, True),
    ("vehicle.age_days: {gte: 5}", ABSENT, False),
    ("vehicle.age_days: {between: [5, 7]}", {"vehicle": {"age_days": 5}}, True),
    ("vehicle.age_days: {between: [5, 7]}", {"vehicle": {"age_days": 7}}, True),
    ("vehicle.age_days: {between: [5, 7]}", {"vehicle": {"age_days": 8}}, False),
    ("vehicle.age_days: {between: [5, 7]}", ABSENT, False),
    ("vehicle.age_days: {in: [1, 3]}", {"vehicle": {"age_days": 3}}, True),
    ("vehicle.age_days: {in: [1, 3]}", {"vehicle": {"age_days": 2}}, False),
    ("vehicle.age_days: {in: [1, 3]}", ABSENT, False),
    ("vehicle.age_days: {not_in: [1, 3]}", {"vehicle": {"age_days": 2}}, True),
    ("vehicle.age_days: {not_in: [1, 3]}", {"vehicle": {"age_days": 3}}, False),
    ("vehicle.age_days: {not_in: [1, 3]}", ABSENT, False),
    ("vehicle.age_days: {exists: true}", {"vehicle": {"age_days": 0}}, True),
    ("vehicle.age_days: {exists: true}", ABSENT, False),
    ("vehicle.age_days: {exists: false}", ABSENT, True),
    ("vehicle.age_days: {exists: false}", {"vehicle": {"age_days": 0}}, False),
    ("vehicle.age_days: {exists: false}", {}, True),
    ("vehicle.service_booked: false", {"vehicle": {"service_booked": False}}, True),
    ("vehicle.service_booked: false", ABSENT, False),
    ("customer.tier: gold", {"customer": {"tier": "gold"}}, True),
    ("customer.tier: {ne: gold}", {"customer": {"tier": "silver"}}, True),
    ("vehicle.km_per_day: {gte: 40}", {"vehicle": {"km_per_day": 40.0}}, True),
    ("not: {vehicle.age_days: {gte: 1}}", ABSENT, True),
    ("not: {vehicle.age_days: {gte: 1}}", {"vehicle": {"age_days": 0}}, True),
    ("not: {vehicle.age_days: {gte: 1}}", {"vehicle": {"age_days": 1}}, False),
    ("not: {vehicle.age_days: {ne: 1}}", ABSENT, True),
    ("not: {vehicle.age_days: {exists: false}}", ABSENT, False),
    ("not: {not: {vehicle.age_days: 1}}", ABSENT, False),
    ("all: [{vehicle.age_days: 1}, {vehicle.visits: 2}]", {"vehicle": {"age_days": 1}}, False),
    ("any: [{vehicle.age_days: 1}, {vehicle.visits: 2}]", {"vehicle": {"age_days": 1}}, True),
    ("any: [{vehicle.age_days: 1}, {vehicle.visits: 2}]", ABSENT, False),
    ("not: [{vehicle.age_days: 1}, {vehicle.visits: 2}]", {"vehicle": {"age_days": 1}}, True),
    (
        "all: [{any: [{vehicle.age_days: 1}, {not: {vehicle.visits: {exists: true}}}]}, "
        "{customer.tier: {in: [gold, diamond]}}]",
        {"vehicle": {"age_days": 9}, "customer": {"tier": "gold"}},
        True,
    ),
]


@pytest.mark.parametrize(("text", "facts", "expected"), SEMANTICS)
def test_condition_meaning_and_its_compiled_predicate_agree(
    text: str, facts: dict[str, Any], expected: bool
) -> None:
    condition = parse(text)
    assert condition.test(facts) is expected
    assert compile_predicate([condition])(facts) == ([0] if expected else [])


def test_facts_lists_every_fact_a_condition_reads() -> None:
    condition = parse("any: [{vehicle.age_days: 1}, {not: {customer.tier: gold}}]")
    assert condition.facts() == {"vehicle.age_days", "customer.tier"}


def test_an_example_at_a_day_fills_today(tmp_path: Path) -> None:
    head = HEAD.replace("subject: vehicle", "subject: customer")
    body = """\
when: {today.is_holiday: true, today.weekday: 2}
once: per day
steps: [{send: sms, template: x/sms}]
examples:
  - {at: 2026-02-17, facts: {customer: {tier: none}}, expect: match}
  - {at: 2026-02-18, facts: {customer: {tier: none}}, expect: no match}
"""
    campaign = load_one(tmp_path, body, head)
    assert campaign.examples[0].at == date(2026, 2, 17)
    [outcome] = run_examples([campaign], holidays={date(2026, 2, 17): "spring-festival"})
    assert outcome.ok and outcome.passed == 2


def test_schema_json_is_built_from_the_catalog() -> None:
    text = (CAMPAIGNS / "schema.json").read_text(encoding="utf-8")
    assert text == render(), "regenerate: python -m rules.schema > campaigns/schema.json"
    facts = json.loads(text)["definitions"]["condition"]["anyOf"][1]["properties"]
    assert "vehicle.projected_km" in facts and "customer.name" not in facts
