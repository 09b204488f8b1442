"""The dealer's data and Milepost's own records, as SQLAlchemy 2.x models."""

from __future__ import annotations

from datetime import date, datetime
from typing import cast

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm.types import UTCDateTime


class Base(DeclarativeBase):
    pass


def table(model: type[Base]) -> Table:
    """The model's table for Core statements (SQLAlchemy types ``__table__`` as a FromClause)."""
    return cast(Table, model.__table__)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)  # the DMS's customer number
    name: Mapped[str] = mapped_column(String(120))
    title: Mapped[str | None] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    email: Mapped[str | None] = mapped_column(String(254))
    birthday: Mapped[date | None] = mapped_column(Date)
    language: Mapped[str] = mapped_column(String(2), default="zh")
    segment: Mapped[str] = mapped_column(String(12), default="private")
    timezone: Mapped[str | None] = mapped_column(String(40))


class Membership(Base):
    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), unique=True)
    tier: Mapped[str] = mapped_column(String(8), default="none")
    points_cumulative: Mapped[int] = mapped_column(Integer, default=0)
    points_redeemable: Mapped[int] = mapped_column(Integer, default=0)
    joined: Mapped[date] = mapped_column(Date)
    expires: Mapped[date | None] = mapped_column(Date)


class Vehicle(Base):
    __tablename__ = "vehicles"

    id: Mapped[int] = mapped_column(primary_key=True)
    vin: Mapped[str] = mapped_column(String(17), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    make: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(60))
    year: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    warranty_months: Mapped[int] = mapped_column(Integer, default=24)
    warranty_km: Mapped[int] = mapped_column(Integer, default=60000)
    insurance_expiry: Mapped[date | None] = mapped_column(Date)
    inspection_due: Mapped[date | None] = mapped_column(Date)


READING = "reading"  # the kind of a service_visits row that is an odometer reading, not a visit


class ServiceVisit(Base):
    """A closed repair order, or (kind ``reading``) an odometer reading taken outside a visit.

    Both are the vehicle's odometer history; only the other kinds are service visits.
    """

    __tablename__ = "service_visits"
    __table_args__ = (UniqueConstraint("order_no"), Index("ix_visits_vehicle", "vehicle_id", "day"))

    id: Mapped[int] = mapped_column(primary_key=True)
    order_no: Mapped[str] = mapped_column(String(40))  # the repair order number
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"))
    day: Mapped[date] = mapped_column(Date)
    odometer_km: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))  # first, periodic, repair; reading
    amount: Mapped[float] = mapped_column(Float, default=0.0)
    declined_items: Mapped[int] = mapped_column(Integer, default=0)
    satisfaction: Mapped[int | None] = mapped_column(Integer)


class Appointment(Base):
    __tablename__ = "appointments"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(10), default="booked")  # booked, cancelled, done


class Complaint(Base):
    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    opened: Mapped[date] = mapped_column(Date)
    closed: Mapped[date | None] = mapped_column(Date)
    summary: Mapped[str] = mapped_column(Text, default="")


class Consent(Base):
    """Per-channel consent; no row means the dealer's default (allowed)."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("customer_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(10))  # sms, email, call
    allowed: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(40), default="import")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Delivery(Base):
    """The ledger: one row per intended message; the unique key makes re-runs harmless."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign", "step", "subject_id", "occurrence", name="uq_delivery"),
        Index("ix_deliveries_status_due", "status", "due_at"),
        Index("ix_deliveries_customer", "customer_id", "created_at"),
        # Twilio's status callbacks find their row by message SID, many per second. Only rows
        # that have one are indexed: the sweep inserts millions that have none yet.
        Index(
            "ix_deliveries_provider_id",
            "provider_id",
            postgresql_where=text("provider_id IS NOT NULL"),
            sqlite_where=text("provider_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign: Mapped[str] = mapped_column(String(60))
    step: Mapped[int] = mapped_column(Integer)
    subject_id: Mapped[int] = mapped_column(Integer)  # vehicle or customer id, per the campaign
    occurrence: Mapped[str] = mapped_column(String(20))  # "once", a year, or a date
    customer_id: Mapped[int] = mapped_column(Integer)
    vehicle_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(10))
    template: Mapped[str] = mapped_column(String(120))
    priority: Mapped[int] = mapped_column(Integer, default=50)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    reason: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_id: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(40))
    segments: Mapped[int | None] = mapped_column(Integer)  # SMS parts billed; None: not an SMS
    facts: Mapped[dict | None] = mapped_column(JSON)  # the facts at match time, for templates
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """A rendered message the outbox channel kept instead of sending (dry run, demo)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), unique=True)
    channel: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    segments: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SweepRun(Base):
    """One sweep, recorded so any machine can follow it: `milepost sweep --wait` polls this."""

    __tablename__ = "sweep_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)  # the moment the sweep evaluates
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ranges: Mapped[int | None] = mapped_column(Integer)  # None until a worker planned the ranges
    done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SweepRange(Base):
    """A range of a run that is evaluated, written in the transaction of its ledger rows.

    Its key makes a retried or duplicated `evaluate` count once: only a new marker adds to
    `sweep_runs.done`.
    """

    __tablename__ = "sweep_ranges"

    run_id: Mapped[int] = mapped_column(ForeignKey("sweep_runs.id"), primary_key=True)
    lo: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hi: Mapped[int] = mapped_column(Integer)
    done_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CallTask(Base):
    """A call on the call-center's list."""

    __tablename__ = "call_tasks"
    __table_args__ = (Index("ix_calls_status_due", "status", "due_by"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    vehicle_id: Mapped[int | None] = mapped_column(Integer)
    campaign: Mapped[str] = mapped_column(String(60))
    phone: Mapped[str | None] = mapped_column(String(20))
    script: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer)
    due_by: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), default="open")  # open, done, expired
    outcome: Mapped[str | None] = mapped_column(String(40))
    agent: Mapped[str | None] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
