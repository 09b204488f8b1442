"""Which facts a ledger row keeps: those its campaign's templates can print, and the language.

The facts stored with a row are only ever read to render its message (a later step's
`unless:` is checked on facts derived anew when it is due: worker.journeys). Keeping the few a
template names instead of all ~40 makes a row a tenth of the size, which is most of the cost of
writing a million of them. Templates can only reach facts as ``scope.fact`` (rules.template_checks
rejects anything else), so reading those names off the parsed templates is complete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from json.encoder import encode_basestring
from math import isfinite
from typing import Any

from rules.campaign import Campaign
from rules.catalog import LANGUAGES
from rules.facts import json_encoder
from rules.template_checks import read_facts
from rules.templates import TemplateStore

ALWAYS = frozenset({"customer.language"})  # worker.deliver picks the template language by it
Kept = tuple[tuple[str, tuple[str, ...]], ...]  # (scope, (fact, ...)) per scope


def kept_facts(campaign: Campaign, templates: TemplateStore) -> Kept | None:
    """The facts any step's template of ``campaign`` names, by scope; None: keep them all."""
    names = set(ALWAYS)
    for step in campaign.steps:
        for language in LANGUAGES:
            try:
                _, tree = templates.parsed(step.template, language)
            except Exception:  # validation read it fine: whatever changed since, keep everything
                return None
            names |= read_facts(tree).keys()
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


# What ledger rows store: compact, non-ASCII text as it is (a third of the bytes of \u escapes).
encode = json_encoder(ensure_ascii=False)
Encoder = Callable[[Mapping[str, Any]], str]


def stored_json(kept: Kept | None) -> Encoder:
    """A function of all the facts giving ``encode(narrow(facts, kept))``, the text a row stores.

    Written straight from the kept facts, without the narrowed dicts and the generic encoder: a
    third of the cost, and a row per match. Compiled once per set of kept facts.
    """
    return encode if kept is None else _compiled(kept)


@lru_cache(maxsize=256)
def _compiled(kept: Kept) -> Encoder:
    lines = ["def _stored(facts):", "    out = []"]
    for scope, keys in kept:
        lines += [f"    s = facts.get({scope!r})", "    if s is not None:", "        p = []"]
        for key in keys:
            lines += [
                f"        x = s.get({key!r})",
                "        if x is not None:",
                f"            p.append({encode(key) + ':'!r} + _value(x))",
            ]
        lines.append(f"        out.append({encode(scope) + ':{'!r} + ','.join(p) + '}}')")
    lines.append("    return '{' + ','.join(out) + '}'")
    namespace: dict[str, Any] = {"_value": _value}
    # Every name and key is a repr'd literal: nothing read from a template runs.
    exec(compile("\n".join(lines) + "\n", "<stored facts>", "exec"), namespace)
    stored: Encoder = namespace["_stored"]
    return stored


def _float(value: float) -> str:
    return float.__repr__(value) if isfinite(value) else encode(value)  # encode refuses NaN


_SCALARS: dict[type, Callable[[Any], str]] = {
    str: encode_basestring,
    int: int.__repr__,
    bool: lambda value: "true" if value else "false",
    float: _float,
}


def _value(value: Any) -> str:
    """The JSON of one fact's value, as ``encode`` writes it."""
    scalar = _SCALARS.get(type(value))
    return encode(value) if scalar is None else scalar(value)
