"""Static checks of a parsed template: no include/extends/import, only catalog facts.

A typo in a fact name must fail `campaigns check`, not a send: StrictUndefined would only raise
when the message is rendered for a customer, on the branch that uses it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from jinja2 import nodes
from jinja2.meta import find_undeclared_variables

from rules.catalog import CATALOG, SCOPES

FORBIDDEN: dict[type[nodes.Node], str] = {
    nodes.Include: "include",
    nodes.Extends: "extends",
    nodes.Import: "import",
    nodes.FromImport: "from … import",
}


def static_problems(tree: nodes.Template) -> list[tuple[int, str]]:
    """(line, message) for every forbidden tag and every name the catalog does not know."""
    found = set(_forbidden(tree)) | set(_names(tree))
    return sorted(found)


def read_facts(tree: nodes.Template) -> dict[str, int]:
    """Every ``scope.fact`` the template reads (``scope.fact`` or ``scope['fact']``), with the
    first line it is read on."""
    found: dict[str, int] = {}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        fact = _fact(node)
        if fact is not None and fact.partition(".")[0] in SCOPES:
            found.setdefault(fact, node.lineno)
    return found


def printed_facts(tree: nodes.Template) -> dict[str, int]:
    """The catalog facts the template reads unguarded, with the first line of each.

    A fact tested with ``is defined`` anywhere in the template counts as guarded: the template
    itself handles its absence.
    """
    guarded = {
        fact
        for test in tree.find_all(nodes.Test)
        if test.name == "defined" and (fact := _fact(test.node)) is not None
    }
    return {f: line for f, line in read_facts(tree).items() if f in CATALOG and f not in guarded}


def _fact(node: nodes.Node) -> str | None:
    """``scope.key`` for ``scope.key`` or ``scope['key']``; None for anything else."""
    if not isinstance(node, nodes.Getattr | nodes.Getitem) or not isinstance(node.node, nodes.Name):
        return None
    if isinstance(node, nodes.Getattr):
        return f"{node.node.name}.{node.attr}"
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return f"{node.node.name}.{node.arg.value}"
    return None


def email_problems(source: str) -> list[tuple[int, str]]:
    """An e-mail template is ``Subject: …``, a blank line, then the body."""
    lines = source.split("\n", 2)
    if not lines[0].startswith("Subject:"):
        return [(1, "an e-mail template must start with a 'Subject: …' line")]
    if len(lines) > 1 and lines[1].strip():
        return [(2, "put a blank line between the 'Subject:' line and the body")]
    return []


def _forbidden(tree: nodes.Template) -> Iterator[tuple[int, str]]:
    for node in tree.find_all(tuple(FORBIDDEN)):
        tag = FORBIDDEN[type(node)]
        yield node.lineno, f"'{tag}' is not allowed: a template must stand alone"


def _names(tree: nodes.Template) -> Iterator[tuple[int, str]]:
    # Names the template assigns itself ({% set %}, loop variables) are not checked.
    free = find_undeclared_variables(tree)
    looked_into: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)  # for mypy: find_all's type
        scope = node.node
        if not isinstance(scope, nodes.Name) or scope.name not in SCOPES or scope.name not in free:
            continue
        looked_into.add(id(scope))
        if isinstance(node, nodes.Getattr):
            key = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            key = node.arg.value
        else:
            yield node.lineno, f"'{scope.name}[…]' cannot be checked: write {scope.name}.<fact>"
            continue
        fact = f"{scope.name}.{key}"
        if key.startswith("_"):
            yield node.lineno, f"'{fact}' is not allowed: templates may not reach into objects"
        elif fact not in CATALOG:
            yield node.lineno, f"unknown variable '{fact}'{_did_you_mean(fact)}"
    for name in tree.find_all(nodes.Name):
        if name.ctx != "load" or name.name not in free or id(name) in looked_into:
            continue
        if name.name in SCOPES:
            yield name.lineno, f"'{name.name}' used whole: name one fact, e.g. {name.name}.<fact>"
        else:
            hint = difflib.get_close_matches(name.name, SCOPES, n=1)
            also = f" — did you mean '{hint[0]}'?" if hint else ""
            yield (
                name.lineno,
                f"unknown name '{name.name}': only {', '.join(SCOPES)} are defined{also}",
            )


def _did_you_mean(fact: str) -> str:
    scope, key = fact.split(".", 1)
    elsewhere = [name for name in CATALOG if name.split(".", 1)[1] == key]
    if elsewhere:  # right fact, wrong scope: customer.model -> vehicle.model
        return f" — did you mean '{elsewhere[0]}'?"
    same_scope = [name for name in CATALOG if name.startswith(scope + ".")]
    close = difflib.get_close_matches(fact, same_scope, n=1) or difflib.get_close_matches(
        fact, CATALOG, n=1
    )
    return f" — did you mean '{close[0]}'?" if close else ""
