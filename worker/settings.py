"""Settings: typed, read once from MILEPOST_* environment variables, loud on a bad value."""

from __future__ import annotations

from datetime import time
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]


class SettingsError(Exception):
    """A MILEPOST_* variable has a value Milepost cannot use."""


def _parse_window(value: str) -> tuple[time, time]:
    start, _, end = value.partition("-")
    try:
        return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a window like 09:00-20:00") from None


class Settings(BaseSettings):
    """Everything an operator can configure; see .env.example."""

    model_config = SettingsConfigDict(env_prefix="MILEPOST_", frozen=True)

    database_url: str = "sqlite:///milepost.db"
    broker_url: str | None = None  # unset: an in-process broker and worker
    timezone: str = "Asia/Shanghai"
    campaigns: Path = ROOT / "campaigns"
    dealer_name: str = "Milepost Motors"
    dealer_phone: str = "400-000-0000"
    sweep_time: time = time(8, 0)
    sweep_batch: int = 2000
    worker_threads: int = 4
    km_per_day: dict[str, float] = {"private": 40, "corporate": 60, "government": 50, "taxi": 300}
    quiet_hours: str = "09:00-20:00"
    phone_region: str = "CN"
    frequency_cap: str = "2/7d"  # marketing messages per customer per period
    # Twilio (sms): unset account SID = sms goes to the outbox
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str | None = None  # another base URL than https://api.twilio.com (fakes)
    twilio_timeout_s: float = 10.0
    sms_validity_s: int = 4 * 3600
    sms_rate_per_s: float = 10.0
    sms_max_segments: int = 2
    # SMTP (email): unset URL = email goes to the outbox
    smtp_url: str | None = None  # smtp://user:pass@host:587 (STARTTLS) or smtps://…:465
    smtp_timeout_s: float = 15.0
    email_from: str = "Milepost Motors <care@example.com>"
    email_rate_per_s: float = 20.0
    # The API: webhooks, unsubscribe links, events
    public_base_url: str | None = None  # how Twilio and customers reach the API
    secret_key: str = "dev-secret-change-me"  # signs unsubscribe links
    api_token: str | None = None  # bearer token for POST /api/events

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _window(cls, value: str) -> str:
        _parse_window(value)
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def quiet_window(self) -> tuple[time, time]:
        return _parse_window(self.quiet_hours)


@cache
def get_settings() -> Settings:
    """The settings of this process, read once; raises SettingsError naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"MILEPOST_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(problems) from None
