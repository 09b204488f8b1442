"""The dealer CSV files: one per entity, their columns, natural keys and references."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from crm import fields as f
from crm.models import (
    Appointment,
    Complaint,
    Consent,
    Customer,
    Membership,
    ServiceVisit,
    Vehicle,
    table,
)

CUSTOMERS, VEHICLES = table(Customer), table(Vehicle)


@dataclass(frozen=True)
class Field:
    """One CSV column: how to read it and where it goes."""

    name: str
    parse: f.Parser
    doc: str
    required: bool = False  # in the header and never empty; other columns may be left out
    label: str = ""  # how errors name it; default: the column name
    default: Any = None  # the value of an empty cell or a left-out column

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Ref:
    """A column naming another entity by its natural key, stored as that row's id."""

    field: str  # CSV column, e.g. customer_code
    column: str  # database column, e.g. customer_id
    table: Table  # the referenced table
    key: str  # its natural key column, e.g. code
    label: str  # for errors: "customer"
    source: str  # where such rows come from: "customers.csv"


RowCheck = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class Entity:
    """One import file: its table, columns, natural key (database columns) and references."""

    name: str
    table: Table
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    refs: tuple[Ref, ...] = ()
    checks: tuple[RowCheck, ...] = ()
    stamp: str | None = None  # set to the import time when a row is new or changed

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    def field(self, name: str) -> Field:
        return next(field for field in self.fields if field.name == name)


def _not_before(later: str, earlier: str) -> RowCheck:
    def check(row: dict[str, Any]) -> str | None:
        first, then = row.get(earlier), row.get(later)
        if first is not None and then is not None and then < first:
            return f"{later} {then} is before {earlier} {first}"
        return None

    return check


CUSTOMER = Ref("customer_code", "customer_id", CUSTOMERS, "code", "customer", "customers.csv")
VEHICLE = Ref("vin", "vehicle_id", VEHICLES, "vin", "vehicle", "vehicles.csv")
customer_code = Field("customer_code", f.text(40), "the owner's `code` from customers.csv", True)
vin_ref = Field("vin", f.vin, "the vehicle's VIN from vehicles.csv", True, "VIN")

ENTITIES: tuple[Entity, ...] = (
    Entity(
        "customers",
        CUSTOMERS,
        (
            Field("code", f.text(40), "the DMS customer number (natural key)", True),
            Field("name", f.text(120), "full name or company name, e.g. 王伟", True),
            Field("title", f.text(120), "how to address them, e.g. 王先生; default: the name"),
            Field("phone", f.phone, "mobile number, national or +86…; stored as E.164"),
            Field("email", f.email, "e-mail address"),
            Field("birthday", f.day, "YYYY-MM-DD"),
            Field("language", f.choice("zh", "en"), "`zh` or `en` (default zh)", default="zh"),
            Field(
                "segment",
                f.choice("private", "corporate", "government", "taxi"),
                "`private`, `corporate`, `government` or `taxi` (default private)",
                default="private",
            ),
            Field("timezone", f.zone, "IANA zone for quiet hours if not the dealer's"),
        ),
        key=("code",),
    ),
    Entity(
        "memberships",
        table(Membership),
        (
            customer_code,
            Field(
                "tier",
                f.choice("none", "silver", "gold", "diamond"),
                "`none`, `silver`, `gold` or `diamond`",
                True,
            ),
            Field("points_cumulative", f.integer(0, 10**9), "all points ever earned", default=0),
            Field("points_redeemable", f.integer(0, 10**9), "points left to spend", default=0),
            Field("joined", f.day, "YYYY-MM-DD", True),
            Field("expires", f.day, "YYYY-MM-DD; empty: no end"),
        ),
        key=("customer_id",),
        refs=(CUSTOMER,),
        checks=(_not_before("expires", "joined"),),
    ),
    Entity(
        "vehicles",
        VEHICLES,
        (
            Field("vin", f.vin, "17 characters, no I, O or Q (natural key)", True, "VIN"),
            customer_code,
            Field("make", f.text(40), "e.g. BYD", True),
            Field("model", f.text(60), "e.g. Qin PLUS", True),
            Field("year", f.integer(1980, 2100), "model year", True),
            Field("delivered_at", f.moment, "handover date and time", True),
            Field("warranty_months", f.integer(0, 240), "default 24", default=24),
            Field("warranty_km", f.integer(0, 2_000_000), "default 60000", default=60000),
            Field("insurance_expiry", f.day, "YYYY-MM-DD"),
            Field("inspection_due", f.day, "YYYY-MM-DD"),
        ),
        key=("vin",),
        refs=(CUSTOMER,),
    ),
    Entity(
        "service_visits",
        table(ServiceVisit),
        (
            Field("order_no", f.text(40), "repair order number (natural key)", True),
            vin_ref,
            Field("day", f.day, "YYYY-MM-DD", True),
            Field(
                "odometer_km", f.integer(0, 3_000_000), "never lower than an earlier visit's", True
            ),
            Field(
                "kind",
                f.choice("first", "periodic", "repair"),
                "`first`, `periodic` or `repair`",
                True,
            ),
            Field("amount", f.amount, "invoice total in yuan (default 0)", default=0.0),
            Field(
                "declined_items",
                f.integer(0, 100),
                "work the customer declined (default 0)",
                default=0,
            ),
            Field("satisfaction", f.integer(1, 5), "survey score 1–5"),
        ),
        key=("order_no",),
        refs=(VEHICLE,),
    ),
    Entity(
        "appointments",
        table(Appointment),
        (
            Field("ref", f.text(40), "booking reference (natural key)", True),
            vin_ref,
            Field("at", f.moment, "date and time of the booking", True),
            Field(
                "status",
                f.choice("booked", "cancelled", "done"),
                "`booked`, `cancelled` or `done` (default booked)",
                default="booked",
            ),
        ),
        key=("ref",),
        refs=(VEHICLE,),
    ),
    Entity(
        "complaints",
        table(Complaint),
        (
            Field("ref", f.text(40), "complaint number (natural key)", True),
            customer_code,
            Field("opened", f.day, "YYYY-MM-DD", True),
            Field("closed", f.day, "YYYY-MM-DD; empty while open"),
            Field("summary", f.text(2000), "what it is about", default=""),
        ),
        key=("ref",),
        refs=(CUSTOMER,),
        checks=(_not_before("closed", "opened"),),
    ),
    Entity(
        "consents",
        table(Consent),
        (
            customer_code,
            Field("channel", f.choice("sms", "email", "call"), "`sms`, `email` or `call`", True),
            Field("allowed", f.yes_no, "`yes` or `no`", True),
            Field("source", f.text(40), "where it was given (default import)", default="import"),
            Field("updated_at", f.moment, "when it was given; default: the import time"),
        ),
        key=("customer_id", "channel"),
        refs=(CUSTOMER,),
        stamp="updated_at",
    ),
)

BY_NAME = {entity.name: entity for entity in ENTITIES}
