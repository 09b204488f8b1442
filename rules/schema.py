"""The JSON Schema of a campaign file, for editors; built from the catalog so the two agree.

Regenerate after changing the catalog: ``python -m rules.schema > campaigns/schema.json``.
The loader (rules.campaign) stays the authority: it also checks what a schema cannot say.
"""

from __future__ import annotations

import json
from typing import Any

from rules.campaign import CHANNELS, SUBJECTS
from rules.catalog import CATALOG, Fact
from rules.fields import ONCE

NUMBER = {"type": "number"}
BOOL = {"type": "boolean"}
DURATION = {"type": "string", "pattern": r"^\s*\d+\s*[hdw]\s*$", "examples": ["7d", "24h", "2w"]}


def _value(fact: Fact) -> dict[str, Any]:
    if fact.type == "bool":
        return {"type": "boolean"}
    if fact.type in ("int", "float"):
        return {"type": "number"}
    return {"type": "string", "enum": list(fact.values)} if fact.values else {"type": "string"}


def _comparison(fact: Fact) -> dict[str, Any]:
    if fact.type in ("int", "float"):
        return {"description": fact.meaning, "$ref": "#/definitions/number"}
    if fact.type == "bool":
        return {"description": fact.meaning, "$ref": "#/definitions/bool"}
    return {"description": fact.meaning, "anyOf": [_value(fact), _operators(_value(fact), False)]}


def _operators(value: dict[str, Any], ordered: bool) -> dict[str, Any]:
    listed = {"type": "array", "items": value, "minItems": 1}
    operators: dict[str, Any] = {"eq": value, "ne": value, "in": listed, "not_in": listed}
    operators["exists"] = {"type": "boolean"}
    if ordered:
        operators |= {op: value for op in ("lt", "lte", "gt", "gte")}
        operators["between"] = {"type": "array", "items": value, "minItems": 2, "maxItems": 2}
    return {
        "type": "object",
        "properties": operators,
        "additionalProperties": False,
        "minProperties": 1,
    }


def build_schema() -> dict[str, Any]:
    """The schema as a dict (draft-07, which editors' YAML plugins support best)."""
    facts = {name: f for name, f in CATALOG.items() if f.in_conditions}
    condition_list = {"type": "array", "items": {"$ref": "#/definitions/condition"}, "minItems": 1}
    condition = {
        "anyOf": [
            {"type": "string", "enum": [n for n, f in facts.items() if f.type == "bool"]},
            {
                "type": "object",
                "minProperties": 1,
                "properties": {
                    "all": condition_list,
                    "any": condition_list,
                    "not": {"anyOf": [{"$ref": "#/definitions/condition"}, condition_list]},
                    **{name: _comparison(fact) for name, fact in facts.items()},
                },
                "additionalProperties": False,
            },
        ]
    }
    scopes = {
        scope: {
            "type": "object",
            "properties": {f.key: _value(f) for f in CATALOG.values() if f.scope == scope},
            "additionalProperties": False,
        }
        for scope in ("customer", "vehicle", "today", "dealer")
    }
    step = {
        "type": "object",
        "required": ["send", "template"],
        "properties": {
            "send": {"enum": list(CHANNELS)},
            "template": {
                "type": "string",
                "pattern": "^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)+$",
            },
            "after": DURATION,
            "unless": {"$ref": "#/definitions/condition"},
            "due": DURATION | {"description": "calls only: must be made within"},
        },
        "additionalProperties": False,
    }
    example = {
        "type": "object",
        "required": ["facts", "expect"],
        "properties": {
            "facts": {"type": "object", "properties": scopes, "additionalProperties": False},
            "expect": {"enum": ["match", "no match"]},
            "at": {"type": "string", "format": "date"},
        },
        "additionalProperties": False,
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Milepost campaign",
        "type": "object",
        "required": ["id", "name", "subject", "when", "steps"],
        "oneOf": [{"required": ["once"]}, {"required": ["every"]}],
        "properties": {
            "id": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
            "name": {"type": "string", "minLength": 1},
            "subject": {"enum": list(SUBJECTS)},
            "when": {"$ref": "#/definitions/condition"},
            "once": {"enum": list(ONCE)},
            "every": DURATION,
            "priority": {"type": "integer", "minimum": 0, "maximum": 100, "default": 50},
            "marketing": {"type": "boolean", "default": True},
            "quiet_hours": {"type": "string", "pattern": r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$"},
            "steps": {"type": "array", "items": step, "minItems": 1},
            "examples": {"type": "array", "items": example},
        },
        "additionalProperties": False,
        "definitions": {
            "condition": condition,
            "number": {"anyOf": [NUMBER, _operators(NUMBER, True)]},
            "bool": {"anyOf": [BOOL, _operators(BOOL, False)]},
        },
    }


def render() -> str:
    """The schema file's text."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
