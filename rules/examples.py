"""Run every campaign's ``examples:`` through the real Evaluator (``milepost campaigns test``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from rules.campaign import Campaign, Example
from rules.conditions import AllOf, AnyOf, Compare, Condition, Not, lookup
from rules.engine import Evaluator


@dataclass(frozen=True)
class ExampleFailure:
    """One example that did not come out as expected; str() is ``path:line: what happened``."""

    path: Path
    line: int
    number: int  # 1-based, as a marketer counts the examples of a file
    expected: bool
    why: str

    def __str__(self) -> str:
        want, got = ("match", "no match") if self.expected else ("no match", "match")
        return (
            f"{self.path}:{self.line}: example {self.number} expects {want}, got {got} ({self.why})"
        )


@dataclass(frozen=True)
class CampaignExamples:
    """The outcome of one campaign's examples."""

    campaign: Campaign
    passed: int
    failures: tuple[ExampleFailure, ...]

    @property
    def ok(self) -> bool:
        """Every example came out as expected."""
        return not self.failures


def run_examples(
    campaigns: Sequence[Campaign], *, holidays: Mapping[date, str] | None = None
) -> list[CampaignExamples]:
    """Each campaign's examples against all ``campaigns`` at once, as the sweep would see them.

    An example's ``at:`` day fills ``today.weekday/month/day`` (and ``today.holiday`` /
    ``is_holiday`` from ``holidays`` when given) unless the example sets them itself.
    """
    results = []
    with Evaluator(campaigns) as evaluator:
        for campaign in campaigns:
            passed, failures = 0, []
            for number, example in enumerate(campaign.examples, 1):
                facts = example_facts(example, holidays)
                matched = any(
                    c.id == campaign.id for c in evaluator.matches(facts, customer_campaigns=True)
                )
                if matched == example.expect:
                    passed += 1
                else:
                    why = _why(campaign.when, facts, example.expect)
                    failures.append(
                        ExampleFailure(campaign.path, example.line, number, example.expect, why)
                    )
            results.append(CampaignExamples(campaign, passed, tuple(failures)))
    return results


def example_facts(example: Example, holidays: Mapping[date, str] | None = None) -> dict[str, Any]:
    """The nested facts of ``example``, with ``today.*`` filled from its ``at:`` day."""
    facts = {scope: dict(values) for scope, values in example.facts.items()}
    if example.at is not None:
        today: dict[str, Any] = {
            "weekday": example.at.isoweekday(),
            "month": example.at.month,
            "day": example.at.day,
        }
        if holidays is not None:
            holiday = holidays.get(example.at)
            today |= {"holiday": holiday or "none", "is_holiday": holiday is not None}
        facts["today"] = today | facts.get("today", {})
    return facts


def _why(condition: Condition, facts: Mapping[str, Any], expected: bool) -> str:
    """The comparisons that went the wrong way for the expectation, with the facts' values."""
    parts = []
    for leaf in _leaves(condition):
        if leaf.test(facts) != expected:
            value = lookup(facts, leaf.fact)
            shown = "absent" if value is None else repr(value)
            verdict = "holds" if not expected else "fails"
            parts.append(f"{leaf.fact} {leaf.op} {_show(leaf.value)} {verdict} for {shown}")
    return "; ".join(parts) or "see the condition"


def _leaves(condition: Condition) -> Iterator[Compare]:
    if isinstance(condition, Compare):
        yield condition
    elif isinstance(condition, AllOf | AnyOf):
        for child in condition.children:
            yield from _leaves(child)
    elif isinstance(condition, Not):
        yield from _leaves(condition.child)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)
