"""Load the holiday calendar (``campaigns/holidays.yaml``: ``key: [YYYY-MM-DD, …]``)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import yaml

KEY = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class HolidaysError(ValueError):
    """The holiday file is unreadable or malformed; str() is ``path:line: message``."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


def load_holidays(path: Path) -> dict[date, str]:
    """Every listed date mapped to its holiday key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HolidaysError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    return parse_holidays(text, path)


def parse_holidays(text: str, path: Path) -> dict[date, str]:
    """Parse the holiday file's text; ``path`` only names it in errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise HolidaysError(path, line, f"not valid YAML: {exc.problem}") from exc
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise HolidaysError(path, _line(root), "expected a mapping of holiday key -> list of dates")
    holidays: dict[date, str] = {}
    for key_node, value_node in root.value:
        key = key_node.value
        if not isinstance(key_node, yaml.ScalarNode) or not KEY.match(str(key)) or key == "none":
            raise HolidaysError(
                path, _line(key_node), f"bad holiday key {key!r}: use lower-case-with-dashes"
            )
        if not isinstance(value_node, yaml.SequenceNode):
            raise HolidaysError(path, _line(value_node), f"{key}: expected a list of dates")
        for item in value_node.value:
            day = _date(item, path)
            if day in holidays:
                raise HolidaysError(
                    path, _line(item), f"{day} is listed twice ({holidays[day]} and {key})"
                )
            holidays[day] = key
    return holidays


def _date(node: yaml.Node, path: Path) -> date:
    value = node.value if isinstance(node, yaml.ScalarNode) else None
    try:
        if not isinstance(value, str):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise HolidaysError(path, _line(node), f"{value!r} is not a date (YYYY-MM-DD)") from None


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1
