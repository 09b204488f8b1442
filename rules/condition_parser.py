"""Read a ``when:`` / ``unless:`` block into a Condition, reporting every mistake with its line."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from math import isfinite
from typing import Any

from rules.catalog import CATALOG, Fact
from rules.conditions import OPERATORS, ORDERED, AllOf, AnyOf, Compare, Condition, Not
from rules.errors import Problems, did_you_mean
from rules.yamlsource import LineDict, LineList, line_of

GROUPS = ("all", "any", "not")
CONDITION_FACTS = tuple(name for name, fact in CATALOG.items() if fact.in_conditions)
SUBJECT_SCOPES = {"vehicle": ("customer", "vehicle", "today"), "customer": ("customer", "today")}
MAX_LIST = 200  # durable_rules keeps at most 511 tests under one node
MAX_NUMBER = 10**15  # beyond this a float no longer holds every integer: say so, don't round


@dataclass
class ConditionParser:
    """Parses conditions of one campaign: its file's problems, its subject, known holiday keys."""

    problems: Problems
    subject: str
    holidays: Collection[str] | None = None  # None: the holiday file is unknown, accept any key

    def parse(self, raw: Any, line: int) -> Condition | None:
        """The condition ``raw`` (from YAML at ``line``), or None after recording its errors."""
        line = line_of(raw, line)
        if isinstance(raw, str):  # `unless: vehicle.service_booked` reads as "is true"
            fact = self._fact(raw, line)
            if fact is None:
                return None
            if fact.type != "bool":
                return self._fail(
                    line, f"{raw!r} alone is not a condition", f"compare it: {{{raw}: {{gte: 1}}}}"
                )
            return Compare(raw, "eq", True)
        if not isinstance(raw, LineDict) or not raw:
            hint = "write `fact: value`, or all: / any: / not: with a list of conditions"
            return self._fail(line, "expected a condition", hint)
        children = [self._entry(key, value, raw.at(key)) for key, value in raw.items()]
        if any(child is None for child in children):
            return None
        return children[0] if len(children) == 1 else AllOf(tuple(c for c in children if c))

    def _entry(self, key: Any, value: Any, line: int) -> Condition | None:
        if key in ("all", "any"):
            if not isinstance(value, LineList) or not value:
                return self._fail(line, f"{key}: needs a list of conditions", "start each with -")
            items = [self.parse(item, at) for item, at in zip(value, value.lines, strict=True)]
            if any(item is None for item in items):
                return None
            kind = AllOf if key == "all" else AnyOf
            return kind(tuple(i for i in items if i))
        if key == "not":  # a list under not: means "not all of them"
            listed = isinstance(value, LineList)
            inner = self._entry("all", value, line) if listed else self.parse(value, line)
            return Not(inner) if inner else None
        fact = self._fact(key, line)
        if fact is None:
            return None
        if isinstance(value, LineDict):
            if not value:
                return self._fail(line, f"no operator for {key}", "e.g. {gte: 100}")
            parts = [self._operator(fact, op, v, value.at(op)) for op, v in value.items()]
            if any(part is None for part in parts):
                return None
            return parts[0] if len(parts) == 1 else AllOf(tuple(p for p in parts if p))
        if isinstance(value, LineList):
            return self._fail(line, f"a list is not a value of {key}", "use {in: [...]}")
        if value is None:
            return self._fail(
                line, f"no value for {key}", "use {exists: false} for an unknown fact"
            )
        return self._operator(fact, "eq", value, line)

    def _fact(self, name: Any, line: int) -> Fact | None:
        fact = CATALOG.get(name) if isinstance(name, str) else None
        if fact is None:
            choices = (*CONDITION_FACTS, *GROUPS)
            hint = did_you_mean(str(name), choices, listing="see `milepost facts` for every fact")
            return self._fail(line, f"unknown fact {name!r}", hint)
        if not fact.in_conditions:
            hint = "text facts are for templates; compare a number, yes/no or choice fact"
            return self._fail(line, f"{name!r} cannot be used in a condition", hint)
        if fact.scope not in SUBJECT_SCOPES[self.subject]:
            hint = "use subject: vehicle to match on vehicle facts"
            return self._fail(line, f"a subject: {self.subject} campaign cannot use {name!r}", hint)
        return fact

    def _operator(self, fact: Fact, op: Any, value: Any, line: int) -> Condition | None:
        if op not in OPERATORS:
            return self._fail(line, f"unknown operator {op!r}", did_you_mean(str(op), OPERATORS))
        if op in ORDERED and fact.type not in ("int", "float"):
            alternative = "use true or false" if fact.type == "bool" else "use in: [...]"
            return self._fail(line, f"{op} compares numbers; {fact.name} is not one", alternative)
        if op == "exists":
            if not isinstance(value, bool):
                return self._fail(line, "exists takes true or false", "e.g. {exists: false}")
            return Compare(fact.name, op, value)
        if op in ("between", "in", "not_in"):
            return self._listed(fact, op, value, line)
        return Compare(fact.name, op, value) if self.check_value(fact, value, line) else None

    def _listed(self, fact: Fact, op: str, value: Any, line: int) -> Condition | None:
        line = line_of(value, line)
        if not isinstance(value, LineList) or not value:
            return self._fail(line, f"{op} takes a list", "e.g. [1, 2]")
        if op == "between" and len(value) != 2:
            return self._fail(line, "between takes [low, high]", "e.g. {between: [30, 60]}")
        if len(value) > MAX_LIST:
            hint = "use between: for a range, or split the campaign"
            return self._fail(line, f"{op} lists {len(value)} values (at most {MAX_LIST})", hint)
        items = value.lines
        if not all([self.check_value(fact, v, at) for v, at in zip(value, items, strict=True)]):
            return None
        if op == "between":
            if value[0] > value[1]:
                return self._fail(line, "between [low, high] needs low <= high", "swap them")
            return Compare(fact.name, op, (value[0], value[1]))
        return Compare(fact.name, op, tuple(dict.fromkeys(value)))

    def check_value(self, fact: Fact, value: Any, line: int) -> bool:
        """Whether ``value`` fits ``fact``'s type; records the error when it does not."""
        if fact.type == "bool":
            if isinstance(value, bool):
                return True
            return self._bad(line, f"{fact.name} is true or false", "write true or false")
        if fact.type == "text":
            if isinstance(value, str):
                return True
            return self._bad(line, f"{fact.name} is text", "write it in quotes")
        if fact.type in ("int", "float"):
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and isfinite(value) and abs(value) <= MAX_NUMBER:
                return True
            hint = "write a number without quotes or units"
            return self._bad(line, f"{fact.name} is a number, not {value!r}", hint)
        known: Collection[str] | None = fact.values or None
        if fact.name == "today.holiday" and self.holidays is not None:
            known = {*self.holidays, "none"}
        if not isinstance(value, str):
            hint = did_you_mean(str(value), known) if known else "write a word"
            return self._bad(line, f"{fact.name} is a choice, not {value!r}", hint)
        if known is not None and value not in known:
            hint = did_you_mean(value, known)
            return self._bad(line, f"{value!r} is not a value of {fact.name}", hint)
        return True

    def _bad(self, line: int, message: str, hint: str) -> bool:
        self.problems.add(line, message, hint)
        return False

    def _fail(self, line: int, message: str, hint: str) -> Any:
        """Record an error; returns None, for ``return self._fail(...)``."""
        self.problems.add(line, message, hint)
        return None
