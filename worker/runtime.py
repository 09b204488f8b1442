"""What a worker process builds once: settings, database, campaigns, engine, templates, channels."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any

from sqlalchemy import Engine

from channels.base import Channel
from channels.registry import build_channels
from crm.db import get_engine
from rules.campaign import Campaign, CampaignError, load_campaigns
from rules.engine import Evaluator
from rules.holidays import load_holidays
from rules.templates import TemplateStore
from worker import policies
from worker.settings import Settings, get_settings


class CampaignsInvalid(Exception):
    """The worker refuses to start on campaign files that do not validate."""


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return get_engine(self.settings.database_url)

    @cached_property
    def campaigns(self) -> dict[str, Campaign]:
        result = load_campaigns(self.settings.campaigns)
        if result.errors:
            raise CampaignsInvalid(
                "campaign files do not validate; run `milepost campaigns check`:\n"
                + "\n".join(str(e) for e in result.errors)
            )
        return {c.id: c for c in result.campaigns}

    @cached_property
    def caps(self) -> policies.Caps:
        return policies.caps(self.settings, self.campaigns.values())

    @cached_property
    def evaluator(self) -> Evaluator:
        return Evaluator(list(self.campaigns.values()))

    @cached_property
    def templates(self) -> TemplateStore:
        return TemplateStore(self.settings.campaigns / "templates")

    @cached_property
    def holidays(self) -> dict[date, str]:
        return dict(load_holidays(self.settings.campaigns / "holidays.yaml"))

    @cached_property
    def channels(self) -> dict[str, Channel]:
        return build_channels(self.settings, self.engine)

    def warm(self) -> None:
        """Build what a delivery needs now rather than on the first message, which would
        otherwise hold its claimed rows in `sending` while ~1 s of imports run."""
        self.campaigns, self.templates  # noqa: B018 — cached on first access
        for channel in self.channels.values():
            warm = getattr(channel, "warm", None)
            if warm is not None:
                warm()

    def dealer(self) -> dict[str, Any]:
        return {"name": self.settings.dealer_name, "phone": self.settings.dealer_phone}


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """This process's runtime, built on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(get_settings())
        return _runtime


def reset_runtime() -> None:
    """Forget the runtime (tests, and a CLI that changed settings)."""
    global _runtime
    with _lock:
        if _runtime is not None and "evaluator" in _runtime.__dict__:
            _runtime.evaluator.close()
        _runtime = None
    get_settings.cache_clear()


__all__ = ["CampaignError", "CampaignsInvalid", "Runtime", "get_runtime", "reset_runtime"]
