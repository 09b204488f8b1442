"""Channel names to adapters, imported on first use; sms and email fall back to the outbox."""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from sqlalchemy import Engine

from channels.base import Channel

log = logging.getLogger("milepost.channels")

# name -> (import path, the setting that must be set for it to be used instead of the outbox)
ADAPTERS: dict[str, tuple[str, str | None]] = {
    "sms": ("channels.sms:TwilioSMSChannel", "twilio_account_sid"),
    "email": ("channels.email:SMTPEmailChannel", "smtp_url"),
    "call": ("channels.call:CallListChannel", None),
}

# Channels whose fallback this process has announced: a runtime rebuilt (a CLI that changed
# settings) or built by two threads at once must not say it again.
_announced: set[str] = set()
_announced_lock = threading.Lock()


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _announce_outbox(name: str, setting: str) -> None:
    with _announced_lock:
        if name in _announced:
            return
        _announced.add(name)
    log.info(
        "%s: MILEPOST_%s is not set, so %s messages go to the outbox and nothing is sent",
        name,
        setting.upper(),
        name,
    )


def build_channels(settings: Any, engine: Engine) -> dict[str, Channel]:
    """One adapter per channel name, configured from ``settings``."""
    from channels.outbox import OutboxChannel

    channels: dict[str, Channel] = {}
    for name, (path, setting) in ADAPTERS.items():
        if setting is None or getattr(settings, setting, None):
            channels[name] = _load(path).from_settings(settings, engine)
        else:
            # Nothing reaches a real customer unless the operator configured a provider.
            _announce_outbox(name, setting)
            channels[name] = OutboxChannel(engine, channel=name)
    return channels
