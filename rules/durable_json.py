"""Compile a condition to durable_rules expressions with exactly ``Condition.test``'s meaning.

Measured on durable_rules 2.0.28: every comparison (``$neq`` included) is False on an absent
field and ``$nex`` is True on it, as in rules.conditions. It has no ``not`` on an expression, so
negation is pushed to the leaves, adding "or absent" (``$nex``) where ``test`` says True for an
absent fact. Facts go in flat (``vehicle.age_days`` -> ``vehicle__age_days``), numbers and
strings only. Two limits of the C core are kept here: a rule of only ``$nex`` hangs it, so every
rule starts with an always-true guard; and one rule holds at most 15 ``$and``/``$or`` groups
(MAX_SEQUENCE_EXPRESSIONS), so a bigger condition is split into several rules, any of which
matching means the condition holds.
"""

from __future__ import annotations

from typing import Any

from rules.conditions import AllOf, AnyOf, Compare, Condition, Not
from rules.errors import CompileError

GUARD = "milepost__seq"  # set > 0 on every asserted fact
MAX_GROUPS = 15
MAX_RULES = 64
MAX_STACK = 56  # MAX_STACK_SIZE is 64; keep a margin for what this model does not see

Expr = tuple[str, Any]  # ("leaf", json) | ("and", [Expr]) | ("or", [Expr])
_OPPOSITE = {"lt": "gte", "lte": "gt", "gt": "lte", "gte": "lt"}


def field(fact: str) -> str:
    """The flat durable_rules field holding ``fact``."""
    return fact.replace(".", "__")


def compile_condition(condition: Condition) -> list[dict[str, Any]]:
    """The durable_rules expressions (each for one rule's ``m``) whose union is ``condition``.

    Raises CompileError when the rules could exceed a limit of the C core.
    """
    guard = _leaf_json("gt", GUARD, 0)
    rules = [
        _simplify(("and", [guard, rule])) for rule in _split(_simplify(_nnf(condition, False)))
    ]
    if len(rules) > MAX_RULES:
        raise CompileError(f"the condition needs {len(rules)} engine rules (at most {MAX_RULES})")
    need = stack_need(rules)
    if need > MAX_STACK:
        raise CompileError(f"the condition has too many alternatives ({need} > {MAX_STACK})")
    return [_json(rule) for rule in rules]


def stack_need(rules: list[Expr]) -> int:
    """An upper bound on durable_rules' alpha stack (64 entries, else error 303) for ``rules``.

    The C core walks the test network depth first, pushing every passed child of a node: the
    stack holds the pending children of each node on the current path. Here every test passes
    (but one equality per field), tests are not shared, and an ``$or`` joins its branches in
    one node, as createAlpha does.
    """
    children: list[list[int]] = [[]]  # node 0: the root, the rules' common start
    group: list[Any] = [0]  # equality tests on one field: at most one of them passes

    def node(parents: list[int], key: Any = None) -> int:
        children.append([])
        group.append(key or len(group))
        for parent in parents:
            children[parent].append(len(children) - 1)
        return len(children) - 1

    def build(expr: Expr, parents: list[int]) -> list[int]:
        kind, body = expr
        if kind == "leaf":
            [name] = body
            return [node(parents, None if name.startswith("$") else ("eq", name))]
        if kind == "and":
            for child in body:
                parents = build(child, parents)
            return parents
        join = node([])
        for child in body:
            for tail in build(child, parents):
                children[tail].append(join)
        return [join]

    for rule in rules:
        build(rule, [0])
    deepest: dict[int, int] = {}

    def need(n: int) -> int:
        if n not in deepest:
            pushed = len({group[c] for c in children[n]})
            deepest[n] = pushed + max((need(c) for c in children[n]), default=0)
        return deepest[n]

    return 1 + need(0)


def _nnf(condition: Condition, negate: bool) -> Expr:
    if isinstance(condition, Not):
        return _nnf(condition.child, not negate)
    if isinstance(condition, AllOf | AnyOf):
        kind = "and" if isinstance(condition, AllOf) != negate else "or"
        return (kind, [_nnf(child, negate) for child in condition.children])
    if isinstance(condition, Compare):
        return _compare(condition, negate)
    raise TypeError(f"not a condition: {condition!r}")


def _compare(c: Compare, negate: bool) -> Expr:
    f, op, v = field(c.fact), c.op, c.value
    absent = ("leaf", {"$nex": {f: 1}})
    if op == "exists":
        return ("leaf", {"$ex" if v != negate else "$nex": {f: 1}})
    if op in ("eq", "ne"):
        leaf = _leaf_json("eq" if (op == "eq") != negate else "ne", f, v)
        return ("or", [leaf, absent]) if negate else leaf
    if op in _OPPOSITE:
        return ("or", [_leaf_json(_OPPOSITE[op], f, v), absent]) if negate else _leaf_json(op, f, v)
    if op == "between":
        low, high = v
        if negate:
            return ("or", [_leaf_json("lt", f, low), _leaf_json("gt", f, high), absent])
        return ("and", [_leaf_json("gte", f, low), _leaf_json("lte", f, high)])
    if op in ("in", "not_in"):
        equal = (op == "in") != negate
        leaves = [_leaf_json("eq" if equal else "ne", f, item) for item in v]
        expr: Expr = ("or", leaves) if equal else ("and", leaves)
        return ("or", [expr, absent]) if negate else expr
    raise ValueError(f"unknown operator {op!r}")


def _leaf_json(op: str, f: str, value: Any) -> Expr:
    if op == "eq":
        return ("leaf", {f: value})
    return ("leaf", {"$neq" if op == "ne" else f"${op}": {f: value}})


def _simplify(expr: Expr) -> Expr:
    """Flatten and-in-and and or-in-or, drop repeats, unwrap one-child groups: same meaning."""
    kind, body = expr
    if kind == "leaf":
        return expr
    false: Expr = ("or", [])
    true: Expr = ("and", [])
    children: list[Expr] = []
    for child in (_simplify(c) for c in body):
        if child == (false if kind == "and" else true):  # absorbs the whole group
            return child
        for grandchild in child[1] if child[0] == kind else [child]:
            if grandchild not in children:  # x or x is x: the engine need not test it twice
                children.append(grandchild)
    return children[0] if len(children) == 1 else (kind, children)


def _groups(expr: Expr) -> int:
    kind, body = expr
    return 0 if kind == "leaf" else 1 + sum(_groups(child) for child in body)


def _split(expr: Expr) -> list[Expr]:
    """Rules whose union is ``expr``, each within MAX_GROUPS once the guard is added."""
    if _groups(_simplify(("and", [("leaf", {}), expr]))) <= MAX_GROUPS:
        return [] if expr == ("or", []) else [expr]
    kind, body = expr
    if kind == "or":
        return [rule for child in body for rule in _split(child)]
    # An "and" of leaves and "or"s: distribute the biggest "or" over the rest.
    pick = max((c for c in body if c[0] == "or"), key=_groups)
    rest = [c for c in body if c is not pick]
    return [rule for branch in pick[1] for rule in _split(_simplify(("and", [*rest, branch])))]


def _json(expr: Expr) -> dict[str, Any]:
    kind, body = expr
    if kind == "leaf":
        return dict(body)
    return {f"${kind}": [_json(child) for child in body]}
