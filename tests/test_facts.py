"""Facts derived from one vehicle record: dates in the dealer's zone, mileage, absent facts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.catalog import CATALOG
from rules.facts import derive
from rules.holidays import HolidaysError, load_holidays, parse_holidays

CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"
SHANGHAI = ZoneInfo("Asia/Shanghai")
KM_PER_DAY = {"private": 40.0, "corporate": 60.0, "government": 50.0, "taxi": 300.0}
AS_OF = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # 10:00 on Sunday 22 November in Shanghai
TODAY = date(2026, 11, 22)
DAY = timedelta(days=1)


def record(**overrides: Any) -> dict[str, Any]:
    """A complete record (as crm.records builds it) of a car with no history."""
    base: dict[str, Any] = {
        "vehicle_id": 1,
        "customer_id": 1,
        "is_primary": True,
        "vin": "LVGBE40K8GP123456",
        "make": "Toyota",
        "model": "Camry",
        "model_year": 2025,
        "delivered_at": datetime(2026, 1, 10, 2, 0, tzinfo=UTC),
        "warranty_months": 24,
        "warranty_km": 60000,
        "insurance_expiry": None,
        "inspection_due": None,
        "visits": 0,
        "first_reading_day": None,
        "first_reading_km": None,
        "last_reading_day": None,
        "last_reading_km": None,
        "last_visit_day": None,
        "last_visit_km": None,
        "first_service_day": None,
        "last_repair_day": None,
        "last_declined_items": 0,
        "next_appointment_at": None,
        "name": "王小明",
        "title": None,
        "birthday": None,
        "language": "zh",
        "segment": "private",
        "timezone": None,
        "tier": "none",
        "points_cumulative": 0,
        "points_redeemable": 0,
        "membership_joined": None,
        "membership_expires": None,
        "open_complaints": 0,
        "last_complaint_closed": None,
        "last_satisfaction": None,
        "customer_last_visit_day": None,
        "max_repair_amount": 0.0,
        "consent_sms": True,
        "consent_email": True,
        "consent_call": True,
    }
    # A history given as visits (first_visit_day/km, last_visit_day/km) with no stand-alone
    # odometer reading: its visits are its readings too.
    first_day, first_km = (
        overrides.pop("first_visit_day", None),
        overrides.pop("first_visit_km", None),
    )
    readings = {"first_reading_day": first_day, "first_reading_km": first_km}
    if first_day is not None or "last_visit_day" in overrides:
        readings["last_reading_day"] = overrides.get("last_visit_day")
        readings["last_reading_km"] = overrides.get("last_visit_km")
    return base | readings | overrides


def facts(
    as_of: datetime = AS_OF, tz: ZoneInfo = SHANGHAI, holidays: Any = None, **overrides: Any
) -> dict[str, dict[str, Any]]:
    return derive(record(**overrides), as_of, tz=tz, holidays=holidays or {}, km_per_day=KM_PER_DAY)


def days_ago(n: int) -> date:
    return TODAY - timedelta(days=n)


def delivered_days_ago(n: int) -> datetime:
    return datetime(2026, 11, 22, 2, 0, tzinfo=UTC) - timedelta(days=n)


@pytest.mark.parametrize(
    ("case", "overrides", "km_per_day", "projected"),
    [
        ("no reading: default from 0 km", {}, 40.0, 4000),
        ("no reading, taxi default", {"segment": "taxi"}, 300.0, 30000),
        (
            "one reading: default from it",
            {"first_visit_day": days_ago(20), "first_visit_km": 5000}
            | {"last_visit_day": days_ago(20), "last_visit_km": 5000},
            40.0,
            5800,
        ),
        (
            "two readings 100 days apart: their rate",
            {"first_visit_day": days_ago(110), "first_visit_km": 1000}
            | {"last_visit_day": days_ago(10), "last_visit_km": 7000},
            60.0,
            7600,
        ),
        (
            "exactly 30 days apart: their rate",
            {"first_visit_day": days_ago(40), "first_visit_km": 1000}
            | {"last_visit_day": days_ago(10), "last_visit_km": 2500},
            50.0,
            3000,
        ),
        (
            "29 days apart: too short, default",
            {"first_visit_day": days_ago(39), "first_visit_km": 1000}
            | {"last_visit_day": days_ago(10), "last_visit_km": 9000},
            40.0,
            9400,
        ),
        (
            "decreasing readings: default",
            {"first_visit_day": days_ago(110), "first_visit_km": 9000}
            | {"last_visit_day": days_ago(10), "last_visit_km": 7000},
            40.0,
            7400,
        ),
        (
            "unchanged readings: default",
            {"first_visit_day": days_ago(110), "first_visit_km": 7000}
            | {"last_visit_day": days_ago(10), "last_visit_km": 7000},
            40.0,
            7400,
        ),
        (
            "fractional rate rounds the projection",
            {"first_visit_day": days_ago(103), "first_visit_km": 0}
            | {"last_visit_day": days_ago(3), "last_visit_km": 3333},
            33.33,
            3433,
        ),
    ],
)
def test_mileage_projection(
    case: str, overrides: dict[str, Any], km_per_day: float, projected: int
) -> None:
    vehicle = facts(delivered_at=delivered_days_ago(100), **overrides)["vehicle"]
    assert vehicle["km_per_day"] == pytest.approx(km_per_day), case
    assert vehicle["projected_km"] == projected, case
    assert vehicle["warranty_km_left"] == 60000 - projected


def test_odometer_and_km_since_last_service_follow_the_last_reading() -> None:
    vehicle = facts(
        first_visit_day=days_ago(110),
        first_visit_km=1000,
        last_visit_day=days_ago(10),
        last_visit_km=7000,
    )["vehicle"]
    assert vehicle["odometer_km"] == 7000
    assert vehicle["km_since_last_service"] == 600
    assert vehicle["days_since_last_service"] == 10


def test_a_new_car_reads_zero_and_has_no_km_since_service() -> None:
    vehicle = facts(delivered_at=delivered_days_ago(3))["vehicle"]
    assert vehicle["odometer_km"] == 0
    assert vehicle["projected_km"] == 120
    assert "km_since_last_service" not in vehicle


def test_many_readings_project_from_the_first_and_last_by_day_through_the_stored_records(
    db_url: str,
) -> None:
    from sqlalchemy import create_engine, insert

    from crm.models import Customer, ServiceVisit, Vehicle, table
    from crm.records import load_records

    first = TODAY - timedelta(days=302)
    # Every other pair of readings gives another rate (first two 20, last two 18.75 km/day);
    # the first and last are 200 days and 10,000 km apart: 50 km/day, not the default 40.
    readings = [  # stored out of order: the day decides which reading is first and last
        ("RO3", first + timedelta(days=120), 9500, "repair"),
        ("RO1", first, 1000, "first"),
        ("RO4", first + timedelta(days=200), 11000, "periodic"),
        ("RO2", first + timedelta(days=50), 2000, "periodic"),
    ]
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            owner = conn.execute(
                insert(table(Customer))
                .values(code="C1", name="王小明")
                .returning(table(Customer).c.id)
            ).scalar_one()
            car = conn.execute(
                insert(table(Vehicle))
                .values(
                    vin="LVGBE40K8GP123456",
                    customer_id=owner,
                    make="Toyota",
                    model="Camry",
                    year=2025,
                    delivered_at=delivered_days_ago(320),
                )
                .returning(table(Vehicle).c.id)
            ).scalar_one()
            for order_no, day, km, kind in readings:
                conn.execute(
                    insert(table(ServiceVisit)).values(
                        order_no=order_no, vehicle_id=car, day=day, odometer_km=km, kind=kind
                    )
                )
        with engine.connect() as conn:
            (stored,) = load_records(conn, car, car)
    finally:
        engine.dispose()

    vehicle = derive(stored, AS_OF, tz=SHANGHAI, holidays={}, km_per_day=KM_PER_DAY)["vehicle"]

    assert vehicle["visits"] == 4
    assert vehicle["km_per_day"] == pytest.approx(50.0)
    assert vehicle["odometer_km"] == 11000  # the latest reading
    assert vehicle["days_since_last_service"] == 102
    assert vehicle["projected_km"] == 11000 + 50 * 102
    assert vehicle["km_since_last_service"] == 50 * 102


@pytest.mark.parametrize(
    ("birthday", "today", "days"),
    [
        (date(1990, 5, 10), date(2026, 5, 10), 0),
        (date(1990, 5, 10), date(2026, 5, 9), 1),
        (date(1990, 5, 10), date(2026, 5, 11), 364),
        (date(1990, 12, 31), date(2027, 1, 1), 364),
        (date(1990, 1, 1), date(2026, 12, 31), 1),
        (date(1992, 2, 29), date(2028, 2, 29), 0),  # leap year: on the day
        (date(1992, 2, 29), date(2028, 2, 28), 1),
        (date(1992, 2, 29), date(2027, 2, 28), 0),  # common year: celebrated on 28 February
        (date(1992, 2, 29), date(2027, 2, 27), 1),
        (date(1992, 2, 29), date(2027, 3, 1), 365),  # next is 29 February 2028
        (date(1992, 2, 29), date(2026, 3, 1), 364),  # next is 28 February 2027
    ],
)
def test_days_to_birthday(birthday: date, today: date, days: int) -> None:
    as_of = datetime(today.year, today.month, today.day, 12, tzinfo=SHANGHAI)
    assert facts(as_of=as_of, birthday=birthday)["customer"]["days_to_birthday"] == days


def test_a_delivery_after_midnight_in_shanghai_is_the_next_local_day() -> None:
    delivered_at = datetime(2026, 11, 21, 16, 30, tzinfo=UTC)  # 00:30 on 22 November, local
    as_of = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)  # 08:00 local
    local = facts(as_of=as_of, delivered_at=delivered_at)
    assert local["vehicle"]["age_days"] == 0
    assert local["vehicle"]["hours_since_delivery"] == 7
    assert (local["today"]["month"], local["today"]["day"]) == (11, 22)
    in_utc = facts(as_of=as_of, tz=ZoneInfo("UTC"), delivered_at=delivered_at)
    assert in_utc["vehicle"]["age_days"] == 1
    assert in_utc["vehicle"]["hours_since_delivery"] == 7


@pytest.mark.parametrize(
    ("as_of", "tz", "day", "weekday"),
    [
        (datetime(2026, 11, 21, 15, 59, tzinfo=UTC), "Asia/Shanghai", 21, 6),
        (datetime(2026, 11, 21, 16, 0, tzinfo=UTC), "Asia/Shanghai", 22, 7),
        (datetime(2026, 11, 21, 16, 0, tzinfo=UTC), "UTC", 21, 6),
        (datetime(2026, 11, 22, 0, 0, tzinfo=SHANGHAI), "UTC", 21, 6),
    ],
)
def test_today_is_the_local_date_of_as_of(as_of: datetime, tz: str, day: int, weekday: int) -> None:
    today = facts(as_of=as_of, tz=ZoneInfo(tz))["today"]
    assert (today["day"], today["weekday"]) == (day, weekday)


@pytest.mark.parametrize(
    ("delivered_at", "as_of", "hours"),
    [
        (datetime(2026, 11, 20, 10, 0, tzinfo=UTC), datetime(2026, 11, 20, 10, 59, tzinfo=UTC), 0),
        (datetime(2026, 11, 20, 10, 0, tzinfo=UTC), datetime(2026, 11, 20, 11, 0, tzinfo=UTC), 1),
        (datetime(2026, 11, 20, 10, 0, tzinfo=UTC), datetime(2026, 11, 21, 9, 59, tzinfo=UTC), 23),
        (datetime(2026, 11, 20, 10, 0, tzinfo=UTC), datetime(2026, 11, 22, 10, 0, tzinfo=UTC), 48),
        (datetime(2026, 11, 20, 18, 0, tzinfo=SHANGHAI), datetime(2026, 11, 20, 11, tzinfo=UTC), 1),
    ],
)
def test_hours_since_delivery_counts_whole_hours(
    delivered_at: datetime, as_of: datetime, hours: int
) -> None:
    assert facts(as_of=as_of, delivered_at=delivered_at)["vehicle"]["hours_since_delivery"] == hours


def test_absent_facts_are_absent_never_none() -> None:
    derived = facts()
    for absent in (
        "customer.days_to_birthday",
        "customer.days_since_last_visit",
        "customer.days_since_complaint_closed",
        "customer.last_satisfaction",
        "customer.membership_days_left",
        "vehicle.days_since_first_service",
        "vehicle.days_since_last_service",
        "vehicle.km_since_last_service",
        "vehicle.days_since_repair",
        "vehicle.insurance_days_left",
        "vehicle.inspection_days_left",
    ):
        scope, key = absent.split(".")
        assert key not in derived[scope], absent
    assert all(v is not None for scope in derived.values() for v in scope.values())


def test_every_derived_fact_is_in_the_catalog_and_every_catalog_fact_can_be_derived() -> None:
    derived = facts(
        birthday=date(1990, 1, 1),
        customer_last_visit_day=days_ago(5),
        last_complaint_closed=days_ago(6),
        last_satisfaction=4,
        membership_expires=TODAY + timedelta(days=7),
        first_visit_day=days_ago(100),
        first_visit_km=100,
        last_visit_day=days_ago(8),
        last_visit_km=4000,
        first_service_day=days_ago(100),
        last_repair_day=days_ago(8),
        insurance_expiry=TODAY + timedelta(days=30),
        inspection_due=TODAY + timedelta(days=60),
    )
    names = {f"{scope}.{key}" for scope, values in derived.items() for key in values}
    expected = {name for name, fact in CATALOG.items() if fact.scope != "dealer"}
    assert names == expected


def test_day_counts_and_dates_left() -> None:
    derived = facts(
        customer_last_visit_day=days_ago(5),
        last_complaint_closed=days_ago(6),
        membership_expires=TODAY + timedelta(days=7),
        first_service_day=days_ago(100),
        last_repair_day=days_ago(8),
        insurance_expiry=TODAY + timedelta(days=30),
        inspection_due=days_ago(2),
    )
    customer, vehicle = derived["customer"], derived["vehicle"]
    assert customer["days_since_last_visit"] == 5
    assert customer["days_since_complaint_closed"] == 6
    assert customer["membership_days_left"] == 7
    assert vehicle["first_service_done"] is True
    assert vehicle["days_since_first_service"] == 100
    assert vehicle["days_since_repair"] == 8
    assert vehicle["insurance_days_left"] == 30
    assert vehicle["inspection_days_left"] == -2


@pytest.mark.parametrize(
    ("delivered_local", "months", "end"),
    [
        (datetime(2025, 1, 31, 10, tzinfo=SHANGHAI), 24, date(2027, 1, 31)),
        (datetime(2024, 2, 29, 10, tzinfo=SHANGHAI), 12, date(2025, 2, 28)),
        (datetime(2026, 8, 31, 10, tzinfo=SHANGHAI), 3, date(2026, 11, 30)),
        (datetime(2024, 11, 22, 1, tzinfo=SHANGHAI), 24, date(2026, 11, 22)),  # 17:00Z the 21st
    ],
)
def test_warranty_days_left_counts_to_delivery_plus_months(
    delivered_local: datetime, months: int, end: date
) -> None:
    vehicle = facts(delivered_at=delivered_local.astimezone(UTC), warranty_months=months)
    assert vehicle["vehicle"]["warranty_days_left"] == (end - TODAY).days


@pytest.mark.parametrize(
    ("appointment", "booked"),
    [
        (None, False),
        (AS_OF + timedelta(hours=1), True),
        (AS_OF, True),
        (AS_OF - timedelta(1), False),
    ],
)
def test_service_booked_means_an_appointment_not_yet_past(
    appointment: datetime | None, booked: bool
) -> None:
    assert facts(next_appointment_at=appointment)["vehicle"]["service_booked"] is booked


@pytest.mark.parametrize(
    ("tier", "rank"), [("none", 0), ("silver", 1), ("gold", 2), ("diamond", 3)]
)
def test_tier_rank(tier: str, rank: int) -> None:
    assert facts(tier=tier)["customer"]["tier_rank"] == rank


def test_text_facts_for_templates() -> None:
    derived = facts(title="王先生")
    assert derived["customer"]["title"] == "王先生"
    assert facts()["customer"]["title"] == "王小明"  # no title: the name
    assert derived["vehicle"]["vin_tail"] == "123456"
    assert (derived["vehicle"]["make"], derived["vehicle"]["model"]) == ("Toyota", "Camry")


@pytest.mark.parametrize(
    ("as_of", "tz", "holiday"),
    [
        (datetime(2026, 2, 16, 16, 30, tzinfo=UTC), "Asia/Shanghai", "spring-festival"),
        (datetime(2026, 2, 16, 16, 30, tzinfo=UTC), "UTC", "none"),
        (datetime(2026, 9, 25, 12, 0, tzinfo=UTC), "Asia/Shanghai", "mid-autumn"),
        (datetime(2026, 9, 26, 12, 0, tzinfo=UTC), "Asia/Shanghai", "none"),
    ],
)
def test_today_holiday_comes_from_the_calendar(as_of: datetime, tz: str, holiday: str) -> None:
    calendar = load_holidays(CAMPAIGNS / "holidays.yaml")
    today = facts(as_of=as_of, tz=ZoneInfo(tz), holidays=calendar)["today"]
    assert today["holiday"] == holiday
    assert today["is_holiday"] is (holiday != "none")


def test_as_of_must_be_aware_and_the_segment_known() -> None:
    with pytest.raises(ValueError, match="aware"):
        facts(as_of=datetime(2026, 11, 22))
    with pytest.raises(ValueError, match="segment 'fleet'"):
        facts(segment="fleet")


@given(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1)),
    st.sampled_from(
        [
            "Asia/Shanghai",
            "America/New_York",
            "America/Santiago",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
            "Europe/London",
        ]
    ),
)
def test_age_days_agrees_with_astimezone_in_every_zone(moment: datetime, zone: str) -> None:
    tz = ZoneInfo(zone)
    delivered_at = moment.replace(tzinfo=UTC)  # as the crm hands them over
    expected = (AS_OF.astimezone(tz).date() - delivered_at.astimezone(tz).date()).days
    assert facts(tz=tz, delivered_at=delivered_at)["vehicle"]["age_days"] == expected


@pytest.mark.parametrize(
    "zone", ["America/New_York", "America/Santiago", "Australia/Lord_Howe", "Europe/London"]
)
def test_age_days_is_right_around_every_offset_change(zone: str) -> None:
    tz = ZoneInfo(zone)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    days = [start + timedelta(days=n) for n in range(365)]
    changes = [
        d for d in days if d.astimezone(tz).utcoffset() != (d + DAY).astimezone(tz).utcoffset()
    ]
    assert changes
    for day in changes:
        for quarter in range(-4 * 24, 2 * 4 * 24):
            delivered_at = day + timedelta(minutes=15 * quarter)
            expected = (AS_OF.astimezone(tz).date() - delivered_at.astimezone(tz).date()).days
            age = facts(tz=tz, delivered_at=delivered_at)["vehicle"]["age_days"]
            assert age == expected, delivered_at


def test_the_shipped_calendar_has_every_holiday_for_2025_to_2030() -> None:
    calendar = load_holidays(CAMPAIGNS / "holidays.yaml")
    assert calendar[date(2026, 2, 17)] == "spring-festival"
    assert calendar[date(2026, 9, 25)] == "mid-autumn"
    assert calendar[date(2026, 10, 1)] == "national-day"
    assert calendar[date(2026, 1, 1)] == "new-year"
    for key in ("spring-festival", "mid-autumn", "national-day", "new-year"):
        years = sorted(day.year for day, name in calendar.items() if name == key)
        assert years == list(range(2025, 2031)), key


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("new-year:\n  - 2026-01-01\n  - 2026-13-01\n", 3, "'2026-13-01' is not a date"),
        ("new-year:\n  - 2026-01-01\nbad key:\n  - 2026-02-01\n", 3, "bad holiday key"),
        ("none: [2026-01-01]\n", 1, "bad holiday key"),
        ("a: [2026-01-01]\nb:\n  - 2026-01-01\n", 3, "listed twice"),
        ("new-year: 2026-01-01\n", 1, "expected a list of dates"),
        ("new-year: [2026-01-01\n", 2, "not valid YAML"),
        ("- 2026-01-01\n", 1, "expected a mapping"),
    ],
)
def test_holiday_file_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(HolidaysError) as caught:
        parse_holidays(text, Path("campaigns/holidays.yaml"))
    assert caught.value.line == line
    assert str(caught.value).startswith(f"campaigns/holidays.yaml:{line}: ")
    assert message in str(caught.value)


def test_a_missing_holiday_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(HolidaysError, match=r"holidays\.yaml: cannot read"):
        load_holidays(tmp_path / "holidays.yaml")
