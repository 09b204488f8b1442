"""Derive one vehicle's facts (with its owner's) from its flat crm record, as of an instant.

Pure and hot: the sweep calls ``derive`` once per vehicle, so everything that depends only on
``as_of`` is computed once and reused, and day counts are differences of proleptic ordinals.
"""

from __future__ import annotations

import json
from calendar import monthrange
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any
from zoneinfo import ZoneInfo

from rules.catalog import TIERS

TIER_RANK = {tier: rank for rank, tier in enumerate(TIERS)}
MIN_RATE_SPAN_DAYS = 30  # shorter odometer histories give wild rates: use the default instead


class _Clock:
    """What one ``as_of`` means in one time zone: the local day and the ``today`` facts."""

    __slots__ = ("as_of", "birthdays", "holidays", "local", "offsets", "ordinal", "today", "tz")

    def __init__(self, as_of: datetime, tz: ZoneInfo, holidays: Mapping[date, str]) -> None:
        if as_of.tzinfo is None or as_of.utcoffset() is None:
            raise ValueError(f"as_of must be an aware datetime, got {as_of!r}")
        self.as_of, self.tz, self.holidays = as_of, tz, holidays
        self.local = as_of.astimezone(tz).date()
        self.ordinal = self.local.toordinal()
        self.offsets = _DAY_OFFSETS.setdefault(tz, {})
        self.birthdays: dict[int, int] = {}  # month * 100 + day -> days to it (366 at most)
        holiday = holidays.get(self.local)
        self.today = {
            "weekday": self.local.isoweekday(),
            "month": self.local.month,
            "day": self.local.day,
            "holiday": holiday or "none",
            "is_holiday": holiday is not None,
        }

    def days_to_birthday(self, birthday: date) -> int:
        key = birthday.month * 100 + birthday.day
        days = self.birthdays.get(key)
        if days is None:
            days = self.birthdays[key] = _days_to_birthday(birthday.month, birthday.day, self.local)
        return days

    def local_ordinal(self, moment: datetime) -> int:
        """The ordinal of ``moment``'s local date; ~4x cheaper than astimezone for UTC input."""
        if moment.tzinfo is not UTC:
            return moment.astimezone(self.tz).toordinal()
        utc_day = moment.toordinal()
        offset = self.offsets.get(utc_day, _UNKNOWN)
        if offset is _UNKNOWN:
            offset = self.offsets[utc_day] = _steady_offset(self.tz, utc_day)
        if offset is None:  # the zone changes its offset that day
            return moment.astimezone(self.tz).toordinal()
        seconds = moment.hour * 3600 + moment.minute * 60 + moment.second + offset
        return utc_day + seconds // 86400


# Per zone: UTC day ordinal -> the zone's UTC offset in seconds all that day, or None.
# Bounded by the calendar (one entry per distinct delivery day), so it is never evicted.
_DAY_OFFSETS: dict[ZoneInfo, dict[int, int | None]] = {}
_UNKNOWN: Any = object()


def _steady_offset(tz: ZoneInfo, utc_day: int) -> int | None:
    # Offsets change at most a few times a year, so equal ends mean one offset all day.
    start = datetime.fromordinal(utc_day).replace(tzinfo=UTC)
    first = start.astimezone(tz).utcoffset()
    last = (start + timedelta(days=1, microseconds=-1)).astimezone(tz).utcoffset()
    if first is None or first != last:
        return None
    return int(first.total_seconds())


_last_clock: _Clock | None = None


def _clock(as_of: datetime, tz: ZoneInfo, holidays: Mapping[date, str]) -> _Clock:
    # An identity check is far cheaper than hashing an aware datetime, and a sweep passes
    # the very same objects for every record of a batch.
    global _last_clock
    clock = _last_clock
    if (
        clock is None
        or clock.as_of is not as_of
        or clock.tz is not tz
        or clock.holidays is not holidays
    ):
        clock = _last_clock = _Clock(as_of, tz, holidays)
    return clock


@lru_cache(maxsize=65536)
def _warranty_end(delivered: int, months: int) -> int:
    # relativedelta's meaning (the 31st plus a month is the month's last day), 15x faster.
    start = date.fromordinal(delivered)
    year, month = divmod(start.month - 1 + months, 12)
    year, month = start.year + year, month + 1
    return date(year, month, min(start.day, monthrange(year, month)[1])).toordinal()


def _days_to_birthday(month: int, day: int, today: date) -> int:
    def occurrence(year: int) -> date:
        # 29 February is celebrated on 28 February in common years.
        if month == 2 and day == 29 and not _is_leap(year):
            return date(year, 2, 28)
        return date(year, month, day)

    this_year = occurrence(today.year)
    if this_year < today:
        this_year = occurrence(today.year + 1)
    return (this_year - today).days


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def derive(
    record: Mapping[str, Any],
    as_of: datetime,
    *,
    tz: ZoneInfo,
    holidays: Mapping[date, str],
    km_per_day: Mapping[str, float],
) -> dict[str, dict[str, Any]]:
    """The facts of one vehicle record as of ``as_of``; unknown facts are absent, never None."""
    clock = _clock(as_of, tz, holidays)
    today = clock.ordinal
    r = record
    segment = r["segment"]
    try:
        default_rate = km_per_day[segment]
    except KeyError:
        raise ValueError(
            f"vehicle {r['vehicle_id']}: no default km/day for segment {segment!r}"
        ) from None

    tier = r["tier"]
    name = r["name"]
    customer: dict[str, Any] = {
        "tier": tier,
        "points_redeemable": r["points_redeemable"],
        "points_cumulative": r["points_cumulative"],
        "segment": segment,
        "language": r["language"],
        "open_complaints": r["open_complaints"],
        "max_repair_amount": r["max_repair_amount"],
        "consent_sms": r["consent_sms"],
        "consent_email": r["consent_email"],
        "consent_call": r["consent_call"],
        "name": name,
        "title": r["title"] or name,
    }
    if (rank := TIER_RANK.get(tier)) is not None:
        customer["tier_rank"] = rank
    if (day := r["birthday"]) is not None:
        customer["days_to_birthday"] = clock.days_to_birthday(day)
    if (day := r["customer_last_visit_day"]) is not None:
        customer["days_since_last_visit"] = today - day.toordinal()
    if (day := r["last_complaint_closed"]) is not None:
        customer["days_since_complaint_closed"] = today - day.toordinal()
    if (score := r["last_satisfaction"]) is not None:
        customer["last_satisfaction"] = score
    if (day := r["membership_expires"]) is not None:
        customer["membership_days_left"] = day.toordinal() - today

    delivered_at = r["delivered_at"]
    delivered = clock.local_ordinal(delivered_at)
    age_days = today - delivered
    since = as_of - delivered_at
    # Mileage: the rate between the first and last odometer readings (visits' and stand-alone
    # ones) when they are far enough apart and increasing, else the segment's default;
    # projected from the last reading. The service facts below count from the last visit.
    rate = default_rate
    service_day, service_km = r["last_visit_day"], r["last_visit_km"]
    first_day, first_km = r["first_reading_day"], r["first_reading_km"]
    last_day, last_km = r["last_reading_day"], r["last_reading_km"]
    if last_day is None or last_km is None:
        odometer = 0
        projected = round(rate * age_days) if age_days > 0 else 0  # a new car starts at 0 km
    else:
        odometer = last_km
        last = last_day.toordinal()
        if first_day is not None and first_km is not None and last_km > first_km:
            span = last - first_day.toordinal()
            if span >= MIN_RATE_SPAN_DAYS:
                rate = (last_km - first_km) / span
        projected = round(last_km + rate * (today - last)) if today > last else last_km
    vin = r["vin"]
    vehicle: dict[str, Any] = {
        "age_days": age_days,
        "hours_since_delivery": since.days * 24 + since.seconds // 3600,
        "model_year": r["model_year"],
        "odometer_km": odometer,
        "km_per_day": float(rate),
        "projected_km": projected,
        "first_service_done": r["first_service_day"] is not None,
        "declined_items": r["last_declined_items"],
        "visits": r["visits"],
        "warranty_days_left": _warranty_end(delivered, r["warranty_months"]) - today,
        "warranty_km_left": r["warranty_km"] - projected,
        "service_booked": (nxt := r["next_appointment_at"]) is not None and nxt >= as_of,
        "make": r["make"],
        "model": r["model"],
        "vin": vin,
        "vin_tail": vin[-6:],
    }
    if service_day is not None:
        vehicle["days_since_last_service"] = today - service_day.toordinal()
        if service_km is not None:
            vehicle["km_since_last_service"] = projected - service_km
    if (day := r["first_service_day"]) is not None:
        vehicle["days_since_first_service"] = today - day.toordinal()
    if (day := r["last_repair_day"]) is not None:
        vehicle["days_since_repair"] = today - day.toordinal()
    if (day := r["insurance_expiry"]) is not None:
        vehicle["insurance_days_left"] = day.toordinal() - today
    if (day := r["inspection_due"]) is not None:
        vehicle["inspection_days_left"] = day.toordinal() - today

    return {"customer": customer, "vehicle": vehicle, "today": clock.today.copy()}


def json_encoder(*, ensure_ascii: bool) -> Callable[[Any], str]:
    """Compact JSON for facts (numbers, booleans, text; NaN and dates refused), reusable.

    ``json.dumps`` builds a C encoder on every call, a third of its time on dicts this small;
    this one is built once. Facts are never circular, so it keeps no markers.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # CPython's accelerator
    if c_make_encoder is None:  # none here: the pure-Python encoder, built once too
        return json.JSONEncoder(
            ensure_ascii=ensure_ascii, allow_nan=False, separators=(",", ":")
        ).encode

    def refuse(value: Any) -> Any:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    strings = encode_basestring_ascii if ensure_ascii else encode_basestring
    encode = c_make_encoder(None, refuse, strings, None, ":", ",", False, False, False)
    return lambda value: "".join(encode(value, 0))
