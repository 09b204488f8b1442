"""What a validated campaign file becomes: Campaign, its Steps and Examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

from rules.conditions import Condition
from rules.errors import CampaignError

# What a step may `send:`; each has an adapter in channels/registry.py (see CONTRIBUTING.md).
CHANNELS = ("sms", "email", "call")


@dataclass(frozen=True)
class Example:
    """``facts`` (nested) should match the campaign (``expect``) or not; ``at`` fills today.*."""

    facts: dict[str, Any] = field(hash=False)
    expect: bool
    at: date | None
    line: int


@dataclass(frozen=True)
class Step:
    """One message of a campaign: a channel, a template, when to send it and when to skip it."""

    index: int
    channel: str
    template: str
    after: timedelta = timedelta(0)
    unless: Condition | None = None
    due: timedelta | None = None
    line: int = 0


@dataclass(frozen=True)
class Campaign:
    """One validated campaign file."""

    id: str
    name: str
    subject: str
    when: Condition
    once: str
    every_days: int | None
    priority: int
    marketing: bool
    quiet_hours: tuple[time, time] | None
    steps: tuple[Step, ...]
    examples: tuple[Example, ...]
    path: Path
    line: int

    def occurrence(self, local_day: date) -> str:
        """The ledger's occurrence key for a match on ``local_day`` (one message per key)."""
        if self.every_days is not None or self.once == "day":
            return local_day.isoformat()
        if self.once == "year":
            return f"{local_day:%Y}"
        return f"{local_day:%Y-%m}" if self.once == "month" else "once"


@dataclass
class LoadResult:
    """The campaigns that validated, every error, and warnings that do not stop loading."""

    campaigns: list[Campaign]
    errors: list[CampaignError]
    warnings: list[str]
