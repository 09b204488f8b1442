"""The condition tree of ``when:`` and ``unless:``, its pure-Python meaning, and a fast predicate.

Facts are the nested dict of rules.facts; an unknown fact is absent. Any comparison on an absent
fact is False (``ne`` and ``not_in`` included); ``exists: false`` is True for it; ``not`` is the
plain negation of its subtree. rules.durable_json compiles the same meaning for durable_rules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import isfinite
from typing import Any

OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in", "exists")
ORDERED = frozenset({"lt", "lte", "gt", "gte", "between"})


def lookup(facts: Mapping[str, Any], name: str) -> Any:
    """The value of ``scope.key`` in nested ``facts``; None when absent (facts never hold None)."""
    scope, _, key = name.partition(".")
    inner = facts.get(scope)
    return inner.get(key) if isinstance(inner, Mapping) else None


class Condition(ABC):
    """A node of a condition tree."""

    @abstractmethod
    def test(self, facts: Mapping[str, Any]) -> bool:
        """Whether ``facts`` (nested by scope) satisfy this condition."""

    @abstractmethod
    def facts(self) -> set[str]:
        """Every fact name the condition reads."""

    @abstractmethod
    def source(self, var: Callable[[str], str], const: Callable[[Any], str]) -> str:
        """A Python expression with the meaning of ``test``; ``var(fact)`` names a local."""

    @abstractmethod
    def present(self) -> set[str]:
        """The facts every match has: a template may print them without a guard."""


@dataclass(frozen=True)
class Compare(Condition):
    """``fact`` compared with ``value`` by ``op`` (one of OPERATORS)."""

    fact: str
    op: str
    value: (
        Any  # a scalar; a (low, high) tuple for between; a tuple for in / not_in; bool for exists
    )

    def test(self, facts: Mapping[str, Any]) -> bool:
        return _TESTS[self.op](lookup(facts, self.fact), self.value)

    def facts(self) -> set[str]:
        return {self.fact}

    def present(self) -> set[str]:
        # Any comparison on an absent fact is False; only ``exists: false`` holds without it.
        return set() if self.op == "exists" and not self.value else {self.fact}

    def source(self, var: Callable[[str], str], const: Callable[[Any], str]) -> str:
        x, op, value = var(self.fact), self.op, self.value
        if op == "exists":
            return f"({x} is not None)" if value else f"({x} is None)"
        if op == "eq":
            return f"({x} == {const(value)})"  # None == value is False: no absence check needed
        if op == "in":
            return f"({x} in {const(frozenset(value))})"
        if op == "between":
            return f"({x} is not None and {const(value[0])} <= {x} <= {const(value[1])})"
        if op == "not_in":
            return f"({x} is not None and {x} not in {const(frozenset(value))})"
        symbol = {"ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[op]
        return f"({x} is not None and {x} {symbol} {const(value)})"


@dataclass(frozen=True)
class AllOf(Condition):
    """Every child holds (True when there are none)."""

    children: tuple[Condition, ...]

    def test(self, facts: Mapping[str, Any]) -> bool:
        return all(child.test(facts) for child in self.children)

    def facts(self) -> set[str]:
        return set().union(*(child.facts() for child in self.children))

    def source(self, var: Callable[[str], str], const: Callable[[Any], str]) -> str:
        parts = [child.source(var, const) for child in self.children]
        return "(" + " and ".join(parts) + ")" if parts else "True"

    def present(self) -> set[str]:
        return set().union(*(child.present() for child in self.children))


@dataclass(frozen=True)
class AnyOf(Condition):
    """At least one child holds."""

    children: tuple[Condition, ...]

    def test(self, facts: Mapping[str, Any]) -> bool:
        return any(child.test(facts) for child in self.children)

    def facts(self) -> set[str]:
        return set().union(*(child.facts() for child in self.children))

    def source(self, var: Callable[[str], str], const: Callable[[Any], str]) -> str:
        parts = [child.source(var, const) for child in self.children]
        return "(" + " or ".join(parts) + ")" if parts else "False"

    def present(self) -> set[str]:
        found = [child.present() for child in self.children]
        return set.intersection(*found) if found else set()


@dataclass(frozen=True)
class Not(Condition):
    """The child does not hold (absent facts included)."""

    child: Condition

    def test(self, facts: Mapping[str, Any]) -> bool:
        return not self.child.test(facts)

    def facts(self) -> set[str]:
        return self.child.facts()

    def source(self, var: Callable[[str], str], const: Callable[[Any], str]) -> str:
        return f"(not {self.child.source(var, const)})"

    def present(self) -> set[str]:
        child = self.child  # not (exists: false) is the one negation that needs the fact
        if isinstance(child, Compare) and child.op == "exists" and not child.value:
            return {child.fact}
        return set()


def _present(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    return lambda x, v: x is not None and test(x, v)


_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _present(lambda x, v: x == v),
    "ne": _present(lambda x, v: x != v),
    "lt": _present(lambda x, v: x < v),
    "lte": _present(lambda x, v: x <= v),
    "gt": _present(lambda x, v: x > v),
    "gte": _present(lambda x, v: x >= v),
    "between": _present(lambda x, v: v[0] <= x <= v[1]),
    "in": _present(lambda x, v: x in v),
    "not_in": _present(lambda x, v: x not in v),
    "exists": lambda x, v: (x is not None) == v,
}


Predicate = Callable[[Mapping[str, Any]], list[int]]


def compile_predicate(conditions: Sequence[Condition]) -> Predicate:
    """A function of nested facts returning the indices of the ``conditions`` that hold."""
    names = sorted(set().union(*(c.facts() for c in conditions)))
    local = {name: f"f{i}" for i, name in enumerate(names)}
    constants: dict[str, Any] = {}

    def const(value: Any) -> str:
        if isinstance(value, bool | int | str) or (isinstance(value, float) and isfinite(value)):
            return repr(value)  # repr of these is a literal that evaluates to the same value
        key = f"_k{len(constants)}"
        constants[key] = value
        return key

    scopes = {scope: f"s{i}" for i, scope in enumerate(sorted({n.split(".")[0] for n in names}))}
    body = [f"    {var} = facts.get({scope!r}) or _EMPTY" for scope, var in scopes.items()]
    for name, var in local.items():
        scope, _, key = name.partition(".")
        body.append(f"    {var} = {scopes[scope]}.get({key!r})")
    body.append("    out = []")
    for index, condition in enumerate(conditions):
        body.append(f"    if {condition.source(local.__getitem__, const)}:")
        body.append(f"        out.append({index})")
    body.append("    return out")
    namespace: dict[str, Any] = {"_EMPTY": {}, **constants}
    code = compile("def _predicate(facts):\n" + "\n".join(body) + "\n", "<campaigns>", "exec")
    exec(code, namespace)  # names are locals or repr'd literals: nothing from a file runs
    predicate: Predicate = namespace["_predicate"]
    return predicate
