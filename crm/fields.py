"""Cell parsers for the CSV import: text in, a clean value out, or BadValue saying why not."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers


class BadValue(ValueError):
    """A cell that does not hold what its column needs; the message ends "… must be …"."""


@dataclass(frozen=True)
class Context:
    """What parsing depends on: the dealer's time zone and the default phone region."""

    tz: ZoneInfo
    region: str


Parser = Callable[[str, Context], Any]

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MOMENT = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)\s*(Z|[+-]\d{2}:?\d{2})?"
)
# Deliberately plain: the address must look like one; only a sent message proves it works.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_VIN_ALPHABET = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
_YES = {"yes", "y", "true", "1", "是"}
_NO = {"no", "n", "false", "0", "否"}


def text(max_length: int) -> Parser:
    """Any text up to ``max_length`` characters."""

    def parse(value: str, ctx: Context) -> str:
        if len(value) > max_length:
            raise BadValue(f"is longer than {max_length} characters")
        return value

    return parse


def choice(*allowed: str) -> Parser:
    """One of ``allowed``, in any letter case."""

    def parse(value: str, ctx: Context) -> str:
        if value.lower() not in allowed:
            raise BadValue(f"must be one of {', '.join(allowed)}")
        return value.lower()

    return parse


def integer(low: int, high: int) -> Parser:
    """A whole number from ``low`` to ``high``."""

    def parse(value: str, ctx: Context) -> int:
        try:
            number = int(value)
        except ValueError:
            raise BadValue("must be a whole number") from None
        if not low <= number <= high:
            raise BadValue(f"must be between {low} and {high}")
        return number

    return parse


def amount(value: str, ctx: Context) -> float:
    """A non-negative amount of money, like 1280.50."""
    try:
        number = float(value)
    except ValueError:
        raise BadValue("must be an amount like 1280.50") from None
    if not 0 <= number < 1e9:  # also rejects nan and inf
        raise BadValue("must be zero or more")
    return number


def yes_no(value: str, ctx: Context) -> bool:
    """yes or no (also true/false, 1/0, 是/否)."""
    lowered = value.lower()
    if lowered in _YES:
        return True
    if lowered in _NO:
        return False
    raise BadValue("must be yes or no")


def day(value: str, ctx: Context) -> date:
    """A calendar date, YYYY-MM-DD."""
    if not _DAY.fullmatch(value):
        raise BadValue("must be a date like 2024-03-31")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadValue("is not a real date") from None


def moment(value: str, ctx: Context) -> datetime:
    """A date and time; without an offset it is the dealer's local time."""
    match = _MOMENT.fullmatch(value)
    if not match:
        raise BadValue("must be a date and time like 2024-03-31 14:30 or 2024-03-31T14:30+08:00")
    day_part, time_part, offset = match.groups()
    try:
        parsed = datetime.fromisoformat(f"{day_part}T{time_part}{offset or ''}")
    except ValueError:
        raise BadValue("is not a real date and time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ctx.tz)


def phone(value: str, ctx: Context) -> str:
    """A phone number, national (in the import's region) or international; stored as E.164."""
    try:
        number = phonenumbers.parse(value, ctx.region)
    except phonenumbers.NumberParseException:
        raise BadValue("is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise BadValue(f"is not a valid phone number (national numbers are read as {ctx.region})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email(value: str, ctx: Context) -> str:
    """An e-mail address; the domain is stored in lower case."""
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise BadValue("is not an e-mail address")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def vin(value: str, ctx: Context) -> str:
    """A 17-character vehicle identification number, stored in upper case."""
    upper = value.upper()
    if len(upper) != 17:
        raise BadValue("must be 17 characters")
    if not _VIN_ALPHABET.fullmatch(upper):
        if any(c in "IOQ" for c in upper):
            raise BadValue("must not contain I, O or Q (VINs use 1 and 0 instead)")
        raise BadValue("must hold only letters and digits")
    return upper


def zone(value: str, ctx: Context) -> str:
    """An IANA time zone name such as Asia/Shanghai."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadValue("is not a time zone name like Asia/Shanghai") from None
    return value
