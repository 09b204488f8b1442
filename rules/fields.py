"""Parsers for a campaign file's plain fields: durations, repetition, quiet hours."""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Any

from rules.errors import Problems, did_you_mean
from rules.yamlsource import LineDict

DURATION = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
ONCE = {
    "per vehicle": "ever",
    "per customer": "ever",
    "per year": "year",
    "per month": "month",
    "per day": "day",
}
CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def duration(value: Any, line: int, problems: Problems, key: str) -> timedelta | None:
    """``7d``, ``24h`` or ``2w`` as a timedelta."""
    found = DURATION.match(value) if isinstance(value, str) else None
    if found is None:
        problems.add(line, f"{key}: {value!r} is not a duration", "write e.g. 7d, 24h or 2w")
        return None
    return int(found.group(1)) * UNITS[found.group(2)]


def repetition(raw: LineDict, subject: str, problems: Problems) -> tuple[str, int | None] | None:
    """``once:`` as ("ever" | "year" | "month" | "day", None); ``every:`` as ("day", days).

    An ``every:`` campaign's occurrence is the day it matched (the ledger counts the period).
    """
    if "once" in raw and "every" in raw:
        line = max(raw.at("once"), raw.at("every"))
        problems.add(line, "once: and every: are both given", "keep one of them")
        return None
    if "once" not in raw and "every" not in raw:
        problems.add(raw.line, "missing once: or every:", "e.g. once: per vehicle, or every: 180d")
        return None
    if "every" in raw:
        period = duration(raw["every"], raw.at("every"), problems, "every")
        if period is None:
            return None
        if period.days < 1 or period % timedelta(days=1):
            problems.add(raw.at("every"), "every: counts whole days", "write e.g. 180d or 2w")
            return None
        return "day", period.days
    value, line = raw["once"], raw.at("once")
    if value not in ONCE:
        problems.add(line, f"once: {value!r} is not a choice", did_you_mean(str(value), ONCE))
        return None
    if value in ("per vehicle", "per customer") and value != f"per {subject}":
        hint = f"write once: per {subject}"
        problems.add(line, f"once: {value} does not fit a subject: {subject} campaign", hint)
        return None
    return ONCE[value], None


def quiet_hours(value: Any, line: int, problems: Problems) -> tuple[time, time] | None:
    """``"09:00-20:00"``: the window in which messages may go out, local time."""
    found = CLOCK.match(value) if isinstance(value, str) else None
    try:
        if found is None:
            raise ValueError
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        start, end = time(h1, m1), time(h2, m2)
    except ValueError:
        problems.add(line, f"quiet_hours: {value!r} is not a window", 'write e.g. "09:00-20:00"')
        return None
    if start == end:
        problems.add(line, "quiet_hours: the window is empty", "give two different times")
        return None
    return start, end
