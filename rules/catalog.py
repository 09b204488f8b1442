"""The facts catalog: every name a campaign condition or a template may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FactType = Literal["int", "float", "bool", "enum", "text"]


@dataclass(frozen=True)
class Fact:
    """One documented fact. ``text`` facts are for templates only, never for conditions.

    An ``optional`` fact is absent when the data behind it is missing (no birthday on file, no
    visit yet): a template may print it only where its campaign's condition requires it.
    """

    name: str
    type: FactType
    meaning: str
    values: tuple[str, ...] = ()
    optional: bool = False

    @property
    def scope(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def key(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def in_conditions(self) -> bool:
        return self.type != "text"


def _maybe(name: str, type: FactType, meaning: str) -> Fact:
    """An optional fact (see Fact)."""
    return Fact(name, type, meaning, optional=True)


TIERS = ("none", "silver", "gold", "diamond")
SEGMENTS = ("private", "corporate", "government", "taxi")
LANGUAGES = ("zh", "en")

_FACTS = [
    # customer: evaluated once per customer for `subject: customer` campaigns
    Fact("customer.tier", "enum", "membership card: none, silver, gold or diamond", TIERS),
    Fact("customer.tier_rank", "int", "the tier as a number: none 0, silver 1, gold 2, diamond 3"),
    Fact("customer.points_redeemable", "int", "points the member can exchange for vouchers"),
    Fact("customer.points_cumulative", "int", "points earned since joining (drive upgrades)"),
    Fact("customer.segment", "enum", "private, corporate, government or taxi", SEGMENTS),
    Fact("customer.language", "enum", "language of every message: zh or en", LANGUAGES),
    _maybe("customer.days_to_birthday", "int", "days until the next birthday, 0 on the day"),
    _maybe("customer.days_since_last_visit", "int", "days since the last visit with any vehicle"),
    Fact("customer.open_complaints", "int", "complaints opened and not yet closed"),
    _maybe("customer.days_since_complaint_closed", "int", "days since the last complaint closed"),
    _maybe("customer.last_satisfaction", "int", "score 1-5 of the latest satisfaction survey"),
    _maybe("customer.membership_days_left", "int", "days until the membership expires"),
    Fact("customer.max_repair_amount", "float", "largest repair bill since joining, in yuan"),
    Fact("customer.consent_sms", "bool", "the customer accepts SMS"),
    Fact("customer.consent_email", "bool", "the customer accepts e-mail"),
    Fact("customer.consent_call", "bool", "the customer accepts phone calls"),
    Fact("customer.name", "text", "full name, as imported"),
    Fact("customer.title", "text", "polite form of address, e.g. 王先生 or Mr Wang"),
    # vehicle: evaluated once per vehicle, with its owner's customer facts
    Fact("vehicle.age_days", "int", "days since the car was handed over"),
    Fact("vehicle.hours_since_delivery", "int", "hours since the car was handed over"),
    Fact("vehicle.model_year", "int", "model year"),
    Fact("vehicle.odometer_km", "int", "latest odometer reading (0 before the first reading)"),
    Fact("vehicle.km_per_day", "float", "km per day from the readings, or the segment default"),
    Fact("vehicle.projected_km", "int", "odometer projected to today from km_per_day"),
    Fact("vehicle.first_service_done", "bool", "the free first service has been done"),
    _maybe("vehicle.days_since_first_service", "int", "days since the first service"),
    _maybe("vehicle.days_since_last_service", "int", "days since the last visit of any kind"),
    _maybe("vehicle.km_since_last_service", "int", "projected km driven since the last visit"),
    _maybe("vehicle.days_since_repair", "int", "days since the last repair order closed"),
    Fact("vehicle.declined_items", "int", "work items declined at the last visit"),
    Fact("vehicle.visits", "int", "number of service visits"),
    Fact("vehicle.warranty_days_left", "int", "days until the warranty ends by time"),
    Fact("vehicle.warranty_km_left", "int", "km until the warranty ends by mileage (projected)"),
    _maybe("vehicle.insurance_days_left", "int", "days until the insurance policy expires"),
    _maybe("vehicle.inspection_days_left", "int", "days until the annual inspection is due"),
    Fact("vehicle.service_booked", "bool", "an appointment is booked and not yet past"),
    Fact("vehicle.make", "text", "make, e.g. Toyota"),
    Fact("vehicle.model", "text", "model, e.g. Camry"),
    Fact("vehicle.vin", "text", "17-character VIN"),
    Fact("vehicle.vin_tail", "text", "last 6 characters of the VIN, for messages"),
    # today: the date of evaluation, in the dealer's time zone
    Fact("today.weekday", "int", "1 Monday … 7 Sunday"),
    Fact("today.month", "int", "1-12"),
    Fact("today.day", "int", "day of the month"),
    Fact("today.is_holiday", "bool", "today is a holiday in campaigns/holidays.yaml"),
    Fact("today.holiday", "enum", "today's holiday key, or none", ()),
    # dealer: from settings, for templates
    Fact("dealer.name", "text", "the dealership's name (MILEPOST_DEALER_NAME)"),
    Fact("dealer.phone", "text", "the dealership's phone (MILEPOST_DEALER_PHONE)"),
]

CATALOG: dict[str, Fact] = {f.name: f for f in _FACTS}
SCOPES = ("customer", "vehicle", "today", "dealer")
