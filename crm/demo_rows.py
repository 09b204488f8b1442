"""The demo dealership's rows, customer by customer, from one seeded random stream.

Rows are tuples in their table's column order with explicit ids, values already converted
for the database (``day``/``moment`` converters), so they can be bulk-inserted as they are.
Whatever a default campaign needs to fire on ``today`` is planted by index (every n-th
customer or vehicle), so it is there at any size; the rest is drawn at random.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from random import Random
from typing import Any
from zoneinfo import ZoneInfo

from crm import demo_catalog as cat

Row = tuple[Any, ...]
TABLES = (
    "customers",
    "memberships",
    "vehicles",
    "service_visits",
    "appointments",
    "complaints",
    "consents",
)
SIX_YEARS = 6 * 365


class DealerRows:
    """Generates customers with their vehicles, visits, memberships, complaints and consents."""

    def __init__(
        self,
        seed: int,
        today: date,
        tz: ZoneInfo,
        day: Mapping[int | None, Any],
        moment: Callable[[datetime], Any],
    ) -> None:
        self.random = Random(seed).random
        self.today, self.tz, self.day, self.moment = today, tz, day, moment
        self.t = today.toordinal()
        self.rows: dict[str, list[Row]] = {name: [] for name in TABLES}
        self.counts = dict.fromkeys(TABLES, 0)  # rows made so far, which also gives the next id
        self.vins = cat.VinMaker()
        self._midnights: dict[int, datetime] = {}  # local day -> its start in UTC

    def take(self) -> dict[str, list[Row]]:
        """The rows made since the last call, by table, in insert order."""
        rows, self.rows = self.rows, {name: [] for name in TABLES}
        return rows

    def _add(self, table: str, *values: Any) -> int:
        self.counts[table] += 1
        row_id = self.counts[table]
        self.rows[table].append((row_id, *values))
        return row_id

    def customer(self, max_vehicles: int = 3) -> int:
        """Make the next customer with up to ``max_vehicles`` vehicles; returns how many."""
        r, i = self.random, self.counts["customers"]
        birthday_today, leap_day = i % 250 == 0, i % 5000 == 1
        u = r()
        if u < 0.86 or birthday_today or leap_day:
            segment = "private"
        else:
            segment = "corporate" if u < 0.93 else "government" if u < 0.96 else "taxi"
        person = segment == "private" or (segment == "taxi" and r() < 0.5)
        english = segment == "private" and r() < 0.05
        name, title, mailbox = self._person(english) if person else self._organisation(segment)
        birthday = None
        if birthday_today:
            born = self.today.replace(year=self.today.year - 40 - 4 * (i // 250 % 8))
            birthday = born.toordinal()
        elif leap_day:
            birthday = date(1988, 2, 29).toordinal()
        elif person and r() < 0.92:
            birthday = self.t - int(8036 + r() * 17532)  # 22 to 70 years old
        phone = None
        if r() < 0.97:
            prefix = cat.MOBILE_PREFIXES[int(r() * len(cat.MOBILE_PREFIXES))]
            phone = f"+86{prefix}{int(r() * 1e8):08d}"
        email = None
        if r() < (0.8 if english or not person else 0.35):
            email = f"{mailbox}@{cat.EMAIL_DOMAINS[int(r() * 3)]}"
        customer_id = self._add(
            "customers",
            f"C{i + 1:07d}",
            name,
            title,
            phone,
            email,
            self.day[birthday],
            "en" if english else "zh",
            segment,
            "Asia/Singapore" if english and r() < 0.1 else None,
        )
        if segment == "private":
            u = r()
            count = 1 if u < 0.86 else 2 if u < 0.97 else 3
        else:
            count = 1 + int(r() * 3)
        count = min(count, max_vehicles)
        first = min(self._vehicle(customer_id, segment) for _ in range(count))
        self._membership(customer_id, first, diamond=birthday_today and i // 250 % 3 == 0)
        self._complaint(customer_id, i, "en" if english else "zh")
        self._consents(customer_id, i)
        return count

    def _person(self, english: bool) -> tuple[str, str, str]:
        r = self.random
        male = r() < 0.55
        n = self.counts["customers"] + 1
        if english:
            first = (cat.EN_MALE if male else cat.EN_FEMALE)[int(r() * 9)]
            last = cat.EN_SURNAMES[int(r() * len(cat.EN_SURNAMES))]
            title = f"{'Mr' if male else 'Ms'} {last}"
            return f"{first} {last}", title, f"{first}.{last}{n % 97}".lower()
        if r() < 0.01:
            surname = cat.COMPOUND_SURNAMES[int(r() * len(cat.COMPOUND_SURNAMES))]
        else:
            surname = cat.SURNAMES[int(len(cat.SURNAMES) * r() * r())]  # common names first
        chars = cat.MALE_GIVEN if male else cat.FEMALE_GIVEN
        given = "".join(chars[int(r() * len(chars))] for _ in range(1 + (r() < 0.7)))
        title = surname + ("先生" if male else "女士")
        return surname + given, title, str(100_000 + n * 7919 % 900_000_000)  # QQ-style

    def _organisation(self, segment: str) -> tuple[str, str, str]:
        r = self.random
        surname = cat.SURNAMES[int(r() * 20)]
        if segment == "government":
            district = cat.DISTRICTS[int(r() * len(cat.DISTRICTS))]
            name = district + cat.AGENCIES[int(r() * len(cat.AGENCIES))]
            return name, f"{surname}主任", f"fleet{self.counts['customers'] + 1}"
        city = cat.CITIES[int(r() * len(cat.CITIES))]
        word = cat.FIRM_WORDS[int(r() * len(cat.FIRM_WORDS))]
        kind = "出租汽车有限公司" if segment == "taxi" else cat.FIRM_KINDS[int(r() * 5)]
        return city + word + kind, f"{surname}经理", f"fleet{self.counts['customers'] + 1}"

    def _at(self, ordinal: int, minute: int) -> Any:
        """The database value of local time ``minute`` past midnight on day ``ordinal``."""
        midnight = self._midnights.get(ordinal)
        if midnight is None:
            local = datetime.fromordinal(ordinal).replace(tzinfo=self.tz)
            midnight = self._midnights[ordinal] = local.astimezone(UTC)
        # Adding in UTC is right as long as the zone keeps its offset all day (true for China;
        # elsewhere a DST-change day is off by an hour, which a demo can live with).
        return self.moment(midnight + timedelta(minutes=minute))

    def _vehicle(self, customer_id: int, segment: str) -> int:
        r, t = self.random, self.t
        k = self.counts["vehicles"]
        keys = cat.SEGMENT_MODELS[segment]
        model = cat.MODELS[keys[int(r() * len(keys))]]
        if k % 400 == 11:  # delivered yesterday afternoon: the 24-hour campaigns fire
            age, minute = 1, 600 + int(r() * 480)
        elif k % 400 == 211:  # delivered this morning
            age, minute = 0, 540 + int(r() * 120)
        else:
            age, minute = int(r() * SIX_YEARS), 540 + int(r() * 570)
        delivered = t - age
        handed = date.fromordinal(delivered)
        year = handed.year + (handed.month >= 10 and r() < 0.4)  # next model year from autumn
        insurance = inspection = None
        planted = k % 97
        if planted in (5, 6):  # insurance renewal: the 30-day SMS and the 15-day call
            insurance = t + (30 if planted == 5 else 15)
        elif r() < 0.8:
            insurance = t + 1 + (delivered - t - 1) % 365  # the next anniversary of delivery
        if planted in (8, 9):
            inspection = t + (30 if planted == 8 else 45)
        elif r() < 0.7:
            inspection = t + 1 + (delivered - t - 1) % (730 if segment == "private" else 365)
        vehicle_id = self._add(
            "vehicles",
            self.vins.make(model.prefix, year, k),
            customer_id,
            model.make,
            model.model,
            year,
            self._at(delivered, minute),
            model.warranty_months,
            model.warranty_km,
            self.day[insurance],
            self.day[inspection],
        )
        self._visits(vehicle_id, k, segment, delivered)
        self._appointment(vehicle_id, k)
        return delivered

    def _visits(self, vehicle_id: int, k: int, segment: str, delivered: int) -> None:
        # The hottest loop of the generator (a few visits per vehicle): locals, no calls.
        r, t = self.random, self.t
        rate = cat.KM_PER_DAY[segment] * (0.6 + 0.8 * r())
        days: list[tuple[int, str]] = []
        if r() >= 0.06:  # the rest never come back to this dealer
            # First service at 5,000 km or 6 months; some owners put it off for months.
            day = delivered + int(min(5000 / rate, 182) * (0.8 + 0.2 * r()))
            day += int(r() * 150) if r() < 0.12 else int(r() * 10)
            interval = min(10000 / rate, 182)
            kind = "first"
            while day < t:
                days.append((day, kind))
                if r() < 0.15:  # lost to another garage
                    break
                day, kind = day + 1 + int(interval * (0.85 + 0.5 * r())), "periodic"
        age = t - delivered
        if k % 50 == 3 and age > 20:  # a repair in the last two weeks
            days.append((t - 3 - k % 12, "repair"))
            days.sort()
        elif age > 60 and r() < age / 365 * 0.08:
            days.append((delivered + 30 + int(r() * (age - 31)), "repair"))
            days.sort()
        rows, to_day = self.rows["service_visits"], self.day
        n = self.counts["service_visits"]
        km, last = 5 + int(r() * 20), delivered
        for day, kind in days:
            km += int(rate * (day - last) * (0.85 + 0.3 * r()))  # never decreasing
            last = day
            declined, amount = 0, 0.0
            if kind == "periodic":
                amount = float(400 + int(r() * 1400))
                if r() < 0.1:
                    declined = 1 + int(r() * 3)
            elif kind == "repair":
                amount = float(min(int(800 * (1 / (1 - r())) ** (1 / 1.2)), 200_000))
            score = None
            if r() < 0.45:
                u = r()
                score = 5 if u < 0.6 else 4 if u < 0.85 else 3 if u < 0.95 else 2 if u < 0.98 else 1
            n += 1
            rows.append(
                (n, f"RO{n:08d}", vehicle_id, to_day[day], km, kind, amount, declined, score)
            )
        self.counts["service_visits"] = n

    def _appointment(self, vehicle_id: int, k: int) -> None:
        t = self.t
        if k % 30 == 4:
            day, status = t + 1 + k % 13, "booked"
        elif k % 90 == 37:
            day, status = t - 1 - k % 20, "cancelled"
        else:
            return
        n = self.counts["appointments"] + 1
        at = self._at(day, 540 + 30 * (k % 15))
        self._add("appointments", f"AP{n:07d}", vehicle_id, at, status)

    def _membership(self, customer_id: int, first_delivery: int, diamond: bool) -> None:
        r, t = self.random, self.t
        if r() >= 0.92 and not diamond:
            return
        # Cumulative points are Pareto-distributed (alpha 1.16: the 80/20 rule).
        points = min(int(400 * ((1 / (1 - r())) ** (1 / 1.16) - 1)), 500_000)
        if diamond:
            points += 12_000
        at_renewal = points * (0.6 + 0.4 * r())  # the card was set then; some now qualify higher
        tier = "none"
        for threshold, name in ((10_000, "diamond"), (4_000, "gold"), (1_500, "silver")):
            if at_renewal >= threshold:
                tier = name
                break
        years = max(1, (t - 60 - first_delivery) // 365 + 1)  # a year at a time, some lapsed
        self._add(
            "memberships",
            customer_id,
            tier,
            points,
            int(points * (0.05 + 0.55 * r())),
            self.day[first_delivery],
            self.day[first_delivery + 365 * years],
        )

    def _complaint(self, customer_id: int, i: int, language: str) -> None:
        r, t = self.random, self.t
        if i % 60 != 7:
            return
        if i % 600 == 127:  # closed five days ago: the follow-up call is due
            opened, closed = t - 9, t - 5
        elif r() < 0.35:  # still open
            opened, closed = t - int(r() * 30), None
        else:
            opened = t - 30 - int(r() * 400)
            closed = opened + 1 + int(r() * 20)
        summary = cat.COMPLAINTS[language][int(r() * len(cat.COMPLAINTS[language]))]
        n = self.counts["complaints"] + 1
        self._add(
            "complaints", f"CP{n:07d}", customer_id, self.day[opened], self.day[closed], summary
        )

    def _consents(self, customer_id: int, i: int) -> None:
        for channel, allowed, planted in (
            ("sms", False, i % 20 == 3),
            ("call", False, i % 35 == 8),
            ("email", True, i % 50 == 13),
        ):
            if planted:
                given = self._at(self.t - 1 - i % 700, 600)
                self._add("consents", customer_id, channel, allowed, "dms", given)
