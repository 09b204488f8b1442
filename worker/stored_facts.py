"""Which facts a ledger row keeps: those its campaign's templates can print, and the language.

The facts stored with a row are only ever read to render its message (a later step's
`unless:` is checked on facts derived anew when it is due: worker.journeys). Keeping the few a
template names instead of all ~40 makes a row a tenth of the size, which is most of the cost of
writing a million of them. Templates can only reach facts as ``scope.fact`` (rules.template_checks
rejects anything else), so reading those names off the parsed templates is complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import nodes

from rules.campaign import Campaign
from rules.catalog import LANGUAGES, SCOPES
from rules.templates import TemplateStore

ALWAYS = frozenset({"customer.language"})  # worker.deliver picks the template language by it
Kept = tuple[tuple[str, tuple[str, ...]], ...]  # (scope, (fact, ...)) per scope


def kept_facts(campaign: Campaign, templates: TemplateStore) -> Kept | None:
    """The facts any step's template of ``campaign`` names, by scope; None: keep them all."""
    names = set(ALWAYS)
    for step in campaign.steps:
        for language in LANGUAGES:
            try:
                source = templates.path(step.template, language).read_text(encoding="utf-8")
                tree = templates.env.parse(source)
            except Exception:  # validation read it fine: whatever changed since, keep everything
                return None
            names |= _named(tree)
    by_scope: dict[str, list[str]] = {}
    for name in sorted(names):
        scope, _, key = name.partition(".")
        by_scope.setdefault(scope, []).append(key)
    return tuple((scope, tuple(keys)) for scope, keys in by_scope.items())


def narrow(facts: Mapping[str, Mapping[str, Any]], kept: Kept | None) -> Mapping[str, Any]:
    """``facts`` with only the ``kept`` ones (absent facts stay absent; facts are never None)."""
    if kept is None:
        return facts
    out: dict[str, dict[str, Any]] = {}
    for scope, keys in kept:
        values = facts.get(scope)
        if values is not None:
            out[scope] = {key: v for key in keys if (v := values.get(key)) is not None}
    return out


def _named(tree: nodes.Template) -> set[str]:
    found = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)  # for mypy: find_all's type
        scope = node.node
        if not (isinstance(scope, nodes.Name) and scope.name in SCOPES):
            continue
        if isinstance(node, nodes.Getattr):
            found.add(f"{scope.name}.{node.attr}")
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.add(f"{scope.name}.{node.arg.value}")
    return found
