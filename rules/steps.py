"""The lists of a campaign file: ``steps:`` (what to send) and ``examples:`` (what to expect)."""

from __future__ import annotations

import contextlib
from datetime import date, timedelta
from typing import Any

from rules import fields
from rules.catalog import CATALOG, SCOPES
from rules.condition_parser import ConditionParser
from rules.errors import did_you_mean
from rules.model import CHANNELS, Example, Step
from rules.templates import TemplateStore
from rules.yamlsource import LineDict, LineList, line_of

STEP_KEYS = ("send", "template", "after", "unless", "due")
EXPECT = {"match": True, "no match": False}


def parse_steps(
    raw: Any, line: int, parser: ConditionParser, templates: TemplateStore
) -> tuple[Step, ...] | None:
    """The ``steps:`` list, each template checked; None once its errors are recorded."""
    problems = parser.problems
    if not isinstance(raw, LineList) or not raw:
        problems.add(line, "steps: needs a list of steps", "e.g. - send: sms, template: x/sms")
        return None
    steps = [
        _step(i, item, at, parser, templates)
        for i, (item, at) in enumerate(zip(raw, raw.lines, strict=True))
    ]
    return tuple(s for s in steps if s) if all(steps) else None


def _step(
    index: int, raw: Any, line: int, parser: ConditionParser, templates: TemplateStore
) -> Step | None:
    problems, before = parser.problems, len(parser.problems.errors)
    if not isinstance(raw, LineDict):
        problems.add(line, "a step is a mapping", "e.g. send: sms and template: x/sms")
        return None
    for key in raw:
        if key not in STEP_KEYS:
            problems.add(raw.at(key), f"unknown key {key!r}", did_you_mean(str(key), STEP_KEYS))
    channel, template = raw.get("send"), raw.get("template")
    if channel not in CHANNELS:
        hint = did_you_mean(str(channel), CHANNELS)
        problems.add(raw.at("send"), f"send: unknown channel {channel!r}", hint)
    if not isinstance(template, str):
        problems.add(
            raw.at("template"), "a step needs template:", "e.g. template: first-service/sms"
        )
    elif channel in CHANNELS:
        problems_found = templates.check(template, channel)
        missing = f"add {template}.zh.j2 and {template}.en.j2 under {templates.root}"
        if any("missing" in problem for problem in problems_found):
            missing = did_you_mean(template, templates.names() - {template}, listing=missing)
        for problem in problems_found:
            hint = missing if "missing" in problem else "fix the template named here"
            problems.add(raw.at("template"), f"template {template!r}: {problem}", hint)
    after = (
        fields.duration(raw["after"], raw.at("after"), problems, "after")
        if "after" in raw
        else timedelta(0)
    )
    unless = parser.parse(raw["unless"], raw.at("unless")) if "unless" in raw else None
    due = None
    if "due" in raw:
        due = fields.duration(raw["due"], raw.at("due"), problems, "due")
        if channel != "call":
            problems.add(raw.at("due"), "due: is for calls only", "remove it, or send: call")
    if len(problems.errors) > before:
        return None
    return Step(index, str(channel), str(template), after or timedelta(0), unless, due, line)


def parse_examples(raw: Any, line: int, parser: ConditionParser) -> tuple[Example, ...] | None:
    """The ``examples:`` list, facts checked against the catalog; None after its errors."""
    if not isinstance(raw, LineList):
        parser.problems.add(line, "examples: takes a list", "start each example with - facts:")
        return None
    parsed = [(_example(item, at, parser), at) for item, at in zip(raw, raw.lines, strict=True)]
    if not all(p for p, _ in parsed):
        return None
    return tuple(Example(p[0], p[1], p[2], at) for p, at in parsed if p)


def _example(
    raw: Any, line: int, parser: ConditionParser
) -> tuple[dict[str, Any], bool, date | None] | None:
    """One ``examples:`` item as (nested facts, expect a match, as-of day or None)."""
    problems = parser.problems
    if not isinstance(raw, LineDict):
        problems.add(line, "an example is a mapping", "write facts: {...} and expect: match")
        return None
    unknown = [key for key in raw if key not in ("facts", "expect", "at")]
    for key in unknown:
        problems.add(
            raw.at(key), f"unknown key {key!r}", did_you_mean(str(key), ("facts", "expect", "at"))
        )
    expect = raw.get("expect")
    if expect not in EXPECT:
        problems.add(
            raw.at("expect"), f"expect: {expect!r}", "write expect: match or expect: no match"
        )
    at = raw.get("at")
    if isinstance(at, str):
        with contextlib.suppress(ValueError):  # a bad string is reported just below
            at = date.fromisoformat(at)
    if at is not None and not isinstance(at, date):
        problems.add(raw.at("at"), f"at: {at!r} is not a date", "write e.g. at: 2026-02-17")
    facts = _facts(raw.get("facts"), raw.at("facts"), parser)
    if (
        facts is None
        or unknown
        or expect not in EXPECT
        or (at is not None and not isinstance(at, date))
    ):
        return None
    return facts, EXPECT[expect], at


def _facts(raw: Any, line: int, parser: ConditionParser) -> dict[str, Any] | None:
    problems = parser.problems
    if not isinstance(raw, LineDict):
        hint = "write them nested, e.g. facts: {vehicle: {age_days: 5}}"
        problems.add(line_of(raw, line), "an example needs facts:", hint)
        return None
    facts: dict[str, Any] = {}
    ok = True
    for scope, values in raw.items():
        at = raw.at(scope)
        if scope not in SCOPES or not isinstance(values, LineDict):
            hint = did_you_mean(str(scope), SCOPES) if scope not in SCOPES else "e.g. {age_days: 5}"
            problems.add(at, f"facts: {scope!r} is not a scope of facts", hint)
            ok = False
            continue
        facts[scope] = {}
        for key, value in values.items():
            name = f"{scope}.{key}"
            fact = CATALOG.get(name)
            if fact is None:
                hint = did_you_mean(name, CATALOG, listing="see `milepost facts`")
                problems.add(values.at(key), f"unknown fact {name!r}", hint)
                ok = False
            elif parser.check_value(fact, value, values.at(key)):
                facts[scope][key] = value
            else:
                ok = False
    return facts if ok else None
