"""Odometer readings never go down: a reading against the vehicle's others, by day.

The readings are the service_visits rows: closed repair orders, and odometer readings taken
outside a visit (kind ``reading``, from the ``odometer.read`` event).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import Connection, select

from crm.models import READING, ServiceVisit, table

SV = table(ServiceVisit)


class OdometerHistory:
    """The readings of the vehicles an import touches: the database's plus those accepted so far.

    Readings on the same day are not ordered against each other (a DMS keeps no time of day);
    a reading must be no lower than any earlier day's and no higher than any later day's.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        # vehicle -> order -> (day, km, kind)
        self._readings: dict[int, dict[str, tuple[date, int, str]]] = {}

    def load(self, vehicle_ids: Iterable[int]) -> None:
        """Fetch the stored readings of vehicles not seen before, in one query."""
        missing = {v for v in vehicle_ids if v not in self._readings}
        if not missing:
            return
        for vehicle_id in missing:
            self._readings[vehicle_id] = {}
        query = select(SV.c.vehicle_id, SV.c.order_no, SV.c.day, SV.c.odometer_km, SV.c.kind).where(
            SV.c.vehicle_id.in_(missing)
        )
        for vehicle_id, order_no, day, km, kind in self._conn.execute(query):
            self._readings[vehicle_id][order_no] = (day, km, kind)

    def conflict(self, vehicle_id: int, order_no: str, day: date, km: int) -> str | None:
        """Why this reading contradicts another one of the vehicle, or None."""
        for other, (other_day, other_km, kind) in self._readings[vehicle_id].items():
            if other == order_no:
                continue  # the row being replaced
            if other_day < day and other_km > km:
                than = f"lower than {other_km} km on {other_day}"
            elif other_day > day and other_km < km:
                than = f"higher than {other_km} km on the later {other_day}"
            else:
                continue
            source = "an odometer reading" if kind == READING else f"order {other}"
            return f"odometer_km {km} on {day} is {than} ({source})"
        return None

    def accept(self, vehicle_id: int, order_no: str, day: date, km: int, kind: str) -> None:
        """Record an accepted reading, so later rows are checked against it."""
        self._readings[vehicle_id][order_no] = (day, km, kind)
