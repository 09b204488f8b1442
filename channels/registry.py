"""Channel names to adapters, imported on first use; sms and email fall back to the outbox."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from channels.base import Channel

log = logging.getLogger("milepost.channels")

# name -> (import path, what must be configured for it to be used instead of the outbox)
ADAPTERS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "sms": (
        "channels.sms:TwilioSMSChannel",
        lambda s: bool(getattr(s, "twilio_account_sid", None)),
    ),
    "email": ("channels.email:SMTPEmailChannel", lambda s: bool(getattr(s, "smtp_url", None))),
    "call": ("channels.call:CallListChannel", lambda s: True),
}


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_channels(settings: Any, engine: Engine) -> dict[str, Channel]:
    """One adapter per channel name, configured from ``settings``."""
    from channels.outbox import OutboxChannel

    channels: dict[str, Channel] = {}
    for name, (path, configured) in ADAPTERS.items():
        if configured(settings):
            factory = _load(path)
            channels[name] = factory.from_settings(settings, engine)
        else:
            # Nothing reaches a real customer unless the operator configured a provider.
            log.info("%s: no provider configured, messages go to the outbox", name)
            channels[name] = OutboxChannel(engine, channel=name)
    return channels
