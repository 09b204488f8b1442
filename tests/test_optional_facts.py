"""Optional facts: absent when their data is missing, so a template prints one only where the
campaign's condition guarantees it; `campaigns check` says so, never a failed send."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_facts import KM_PER_DAY, record

from rules.campaign import load_campaigns
from rules.catalog import CATALOG
from rules.facts import derive

CAMPAIGN = """\
id: insurance
name: Insurance
subject: vehicle
when:
{when}
once: per vehicle
steps:
  - send: sms
    template: x/sms
"""


def test_the_catalog_marks_optional_exactly_the_facts_a_record_without_history_lacks():
    facts = derive(
        record(), datetime(2026, 11, 22, tzinfo=UTC), tz=ZoneInfo("Asia/Shanghai"),
        holidays={}, km_per_day=KM_PER_DAY,
    )  # fmt: skip
    present = {f"{scope}.{key}" for scope, values in facts.items() for key in values}
    derived = {name for name in CATALOG if not name.startswith("dealer.")}
    assert derived - present == {name for name in derived if CATALOG[name].optional}
    full = record(
        birthday=datetime(1990, 5, 1).date(), customer_last_visit_day=datetime(2026, 5, 1).date(),
        last_complaint_closed=datetime(2026, 6, 1).date(), last_satisfaction=5,
        membership_expires=datetime(2027, 1, 1).date(), last_visit_day=datetime(2026, 5, 1).date(),
        last_visit_km=5000, first_visit_day=datetime(2026, 3, 1).date(), first_visit_km=1000,
        first_service_day=datetime(2026, 3, 1).date(), last_repair_day=datetime(2026, 5, 1).date(),
        insurance_expiry=datetime(2027, 1, 1).date(), inspection_due=datetime(2027, 1, 1).date(),
    )  # fmt: skip
    facts = derive(
        full, datetime(2026, 11, 22, tzinfo=UTC), tz=ZoneInfo("Asia/Shanghai"),
        holidays={}, km_per_day=KM_PER_DAY,
    )  # fmt: skip
    assert {f"{scope}.{key}" for scope, values in facts.items() for key in values} == derived


def load(tmp_path: Path, when: str, template: str) -> list[str]:
    for language in ("zh", "en"):
        path = tmp_path / "templates" / "x" / f"sms.{language}.j2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template, encoding="utf-8")
    (tmp_path / "insurance.yaml").write_text(CAMPAIGN.format(when=when), encoding="utf-8")
    result = load_campaigns(tmp_path)
    return [f"{e}" for e in result.errors]


PRINTS = "Your policy ends in {{ vehicle.insurance_days_left }} days."


@pytest.mark.parametrize(
    "when",
    [
        "  vehicle.age_days: {gte: 300}",
        "  any:\n    - vehicle.insurance_days_left: {lte: 30}\n    - vehicle.age_days: {gte: 300}",
        "  not: {vehicle.insurance_days_left: {gte: 30}}",
        "  vehicle.insurance_days_left: {exists: false}",
    ],
)
def test_printing_an_optional_fact_the_condition_does_not_guarantee_fails_the_check(
    tmp_path: Path, when: str
):
    (error,) = load(tmp_path, when, PRINTS)
    step_line = 8 + when.count("\n")
    assert f"insurance.yaml:{step_line}: " in error
    assert "sms.zh.j2:1 prints vehicle.insurance_days_left, which not every vehicle has" in error
    assert "vehicle.insurance_days_left: {exists: true}" in error and "is defined" in error


@pytest.mark.parametrize(
    ("when", "template"),
    [
        ("  vehicle.insurance_days_left: {lte: 30}", PRINTS),
        ("  all:\n    - vehicle.insurance_days_left: {exists: true}", PRINTS),
        (
            "  any:\n    - vehicle.insurance_days_left: {lte: 30}\n"
            "    - all: [{vehicle.insurance_days_left: {exists: true}}, {vehicle.age_days: 9}]",
            PRINTS,
        ),
        ("  not: {vehicle.insurance_days_left: {exists: false}}", PRINTS),
        (
            "  vehicle.age_days: {gte: 300}",
            "{% if vehicle.insurance_days_left is defined %}{{ vehicle.insurance_days_left }}"
            "{% else %}soon{% endif %}",
        ),
        ("  vehicle.age_days: {gte: 300}", "Hello {{ customer.title }}, {{ vehicle.age_days }}"),
    ],
)
def test_a_guaranteed_or_guarded_optional_fact_passes(tmp_path: Path, when: str, template: str):
    assert load(tmp_path, when, template) == []
