"""YAML that remembers lines: mappings and lists carry the line of every key and item."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rules.errors import CampaignError


class LineDict(dict[Any, Any]):
    """A YAML mapping: ``line`` is where it starts, ``lines[key]`` where each key is."""

    line: int
    lines: dict[Any, int]

    def at(self, key: Any) -> int:
        """The line of ``key``, or of the mapping when the key is missing."""
        return self.lines.get(key, self.line)


class LineList(list[Any]):
    """A YAML sequence: ``line`` is where it starts, ``lines[i]`` where item ``i`` is."""

    line: int
    lines: list[int]


def line_of(value: Any, default: int) -> int:
    """Where ``value`` starts if YAML told us, else ``default``."""
    return int(getattr(value, "line", default))


class _Loader(yaml.SafeLoader):
    """SafeLoader building LineDict/LineList, rejecting duplicate and unhashable keys."""

    path: Path


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line, result.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool):
            raise CampaignError(
                loader.path, line, "a key must be a plain word", "remove the brackets"
            )
        if key in result:
            raise CampaignError(
                loader.path, line, f"{key!r} is given twice", f"first at line {result.lines[key]}"
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = line
    return result


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(item, deep=True) for item in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [item.start_mark.line + 1 for item in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(text: str, path: Path) -> Any:
    """Parse one YAML document; raises CampaignError with the line of a syntax error."""
    loader = _Loader(text)
    loader.path = path
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise CampaignError(
            path, line, f"not valid YAML: {exc.problem}", "check the indentation and quoting here"
        ) from None
    except yaml.YAMLError as exc:
        raise CampaignError(path, 1, f"not valid YAML: {exc}", "one campaign per file") from None
    finally:
        loader.dispose()
