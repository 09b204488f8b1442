"""The channel registry: real adapters when their provider is configured, the outbox otherwise.

Nothing reaches a customer unless an operator configured a provider, and a worker says which
channels are dry runs once when it starts, not once per runtime, thread or job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from channels import registry
from channels.call import CallListChannel
from channels.email import SMTPEmailChannel
from channels.outbox import OutboxChannel
from channels.registry import build_channels
from channels.sms import TwilioSMSChannel
from worker.runtime import Runtime, get_runtime
from worker.settings import Settings

TWILIO: dict[str, Any] = {
    "twilio_account_sid": "AC" + "0" * 32,
    "twilio_auth_token": "token",
    "twilio_from": "+8610690000",
}
SMTP: dict[str, Any] = {
    "smtp_url": "smtp://127.0.0.1:2525",
    "public_base_url": "https://care.dealer.example",
}
# Unset, whatever the developer's environment says.
NOTHING: dict[str, Any] = {"twilio_account_sid": None, "smtp_url": None}


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    yield engine
    engine.dispose()


@pytest.fixture
def new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a process that has announced nothing yet."""
    monkeypatch.setattr(registry, "_announced", set())


def announcements(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "milepost.channels"]


def test_sms_and_email_go_to_the_outbox_when_their_credentials_are_not_set(
    engine: Engine, new_process: None
) -> None:
    channels = build_channels(Settings(**NOTHING), engine)

    assert isinstance(channels["sms"], OutboxChannel) and channels["sms"].channel == "sms"
    assert isinstance(channels["email"], OutboxChannel) and channels["email"].channel == "email"
    assert isinstance(channels["call"], CallListChannel)  # needs no provider


@pytest.mark.parametrize(
    ("configured", "real", "dry"),
    [
        (TWILIO, {"sms": TwilioSMSChannel}, "email"),
        (SMTP, {"email": SMTPEmailChannel}, "sms"),
        ({**TWILIO, **SMTP}, {"sms": TwilioSMSChannel, "email": SMTPEmailChannel}, None),
    ],
)
def test_configured_settings_give_the_real_adapters(
    engine: Engine,
    new_process: None,
    caplog: pytest.LogCaptureFixture,
    configured: dict[str, Any],
    real: dict[str, type],
    dry: str | None,
) -> None:
    caplog.set_level(logging.INFO, "milepost.channels")

    channels = build_channels(Settings(**{**NOTHING, **configured}), engine)

    assert {name: type(channels[name]) for name in real} == real
    if dry:
        assert isinstance(channels[dry], OutboxChannel)
    told = announcements(caplog)
    assert len(told) == (1 if dry else 0) and all(t.startswith(f"{dry}:") for t in told)


def test_the_fallback_is_said_once_per_channel_naming_the_setting(
    engine: Engine, new_process: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "milepost.channels")

    build_channels(Settings(**NOTHING), engine)

    assert announcements(caplog) == [
        "sms: MILEPOST_TWILIO_ACCOUNT_SID is not set, so sms messages go to the outbox "
        "and nothing is sent",
        "email: MILEPOST_SMTP_URL is not set, so email messages go to the outbox "
        "and nothing is sent",
    ]


def test_a_process_says_it_once_however_many_runtimes_and_threads_build_channels(
    engine: Engine, new_process: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "milepost.channels")
    settings = Settings(**NOTHING)

    with ThreadPoolExecutor(8) as pool:  # worker threads racing for a runtime's first use
        list(pool.map(lambda _: build_channels(settings, engine), range(32)))
    build_channels(settings, engine)  # a runtime rebuilt later (a CLI that changed settings)

    assert sorted(t.split(":")[0] for t in announcements(caplog)) == ["email", "sms"]


def test_a_worker_builds_its_channels_once_and_every_job_shares_them(
    runtime: Runtime, new_process: None
) -> None:
    with ThreadPoolExecutor(8) as pool:  # the jobs of a worker process's threads
        seen = set(pool.map(lambda _: id(get_runtime().channels), range(32)))

    assert len(seen) == 1
