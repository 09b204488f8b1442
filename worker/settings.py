"""Settings: typed, read once from MILEPOST_* environment variables, loud on a bad value."""

from __future__ import annotations

from datetime import time
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class SettingsError(Exception):
    """A MILEPOST_* variable has a value Milepost cannot use."""


def _parse_window(value: str) -> tuple[time, time]:
    start, _, end = value.partition("-")
    try:
        return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a window like 09:00-20:00") from None


@cache
def parse_cap(value: str) -> tuple[int, int]:
    """`2/7d` -> (2, 7): messages per period of days."""
    count, _, period = value.partition("/")
    try:
        limit, days = int(count), int(period.strip().removesuffix("d"))
    except ValueError:
        raise ValueError(f"{value!r} is not a cap like 2/7d (messages / days)") from None
    if limit < 0 or days < 1:
        raise ValueError(f"{value!r}: the count must be 0 or more, the period 1 day or more")
    return limit, days


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
    # `milepost worker`: processes, and messages each holds per queue (unset: 8 per thread)
    worker_processes: int = 2
    worker_prefetch: int | None = None
    metrics_host: str = "0.0.0.0"  # the worker's Prometheus endpoint
    metrics_port: int = 9191  # 0: no metrics endpoint
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    km_per_day: dict[str, float] = {"private": 40, "corporate": 60, "government": 50, "taxi": 300}
    quiet_hours: str = "09:00-20:00"
    phone_region: str = "CN"
    frequency_cap: str = "2/7d"  # marketing messages per customer per period
    frequency_cap_sms: str | None = None  # set: SMS get their own cap, counting SMS only
    frequency_cap_email: str | None = None  # set: e-mail gets its own cap, counting e-mail only
    retry_max_attempts: int = 5  # sends of one message before a transient error is final
    retry_backoff_s: float = 30.0  # wait after the first transient error, doubled each time
    retry_backoff_cap_s: float = 3600.0
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
    # The Redis through which every worker process shares the rate limits above. Unset: the
    # broker's URL when that is Redis; with RabbitMQ and no Redis each process limits itself.
    redis_url: str | None = Field(default=None, validate_default=True)
    # The scheduler's housekeeping tick: how often it runs; how long a waiting row may sit
    # after its job was queued before the job counts as lost and is queued again (only while
    # the broker holds no `deliver` job); how long a row may stay `sending` before its worker
    # counts as dead and the row becomes `unknown`.
    scheduler_tick_s: float = 30.0
    requeue_quiet_s: float = 300.0
    stale_sending_s: float = 600.0  # after the provider timeouts above: checked
    # Touched after every tick; `milepost health --scheduler`, run in the scheduler's container,
    # reads its age. A fixed path, not $TMPDIR: the health check may see another TMPDIR.
    scheduler_heartbeat: Path = Path("/tmp/milepost-scheduler.heartbeat")
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

    @field_validator("frequency_cap", "frequency_cap_sms", "frequency_cap_email")
    @classmethod
    def _cap(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cap(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:  # unset, or set empty by compose
            broker = info.data.get("broker_url") or ""
            return broker if broker.startswith(REDIS_SCHEMES) else None
        if not value.startswith(REDIS_SCHEMES):
            raise ValueError(f"must start with {', '.join(REDIS_SCHEMES)}")
        return value

    @field_validator("scheduler_tick_s", "requeue_quiet_s", "stale_sending_s")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0 seconds")
        return value

    @field_validator("stale_sending_s")
    @classmethod
    def _outlasts_timeouts(cls, value: float, info: ValidationInfo) -> float:
        # A row still `sending` because the provider is slow to answer must not be marked
        # `unknown` under a live worker: staleness has to outlast every provider timeout.
        longest = max(info.data.get("twilio_timeout_s", 0), info.data.get("smtp_timeout_s", 0))
        if value <= longest:
            raise ValueError(f"must be longer than the longest provider timeout ({longest:g} s)")
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
            f"MILEPOST_{'_'.join(str(p) for p in err['loc']).upper()}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise SettingsError(problems) from None
