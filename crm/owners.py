"""The owners' part of a batch's records: one row per owner of a vehicle in ``lo..hi``.

Membership, and aggregates over everything the owner has: visits with any of their vehicles,
complaints, consents. Each dialect gets the form its planner runs best; crm.records runs it
and tests/test_records.py checks both against a naive reading.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import ARRAY, Integer, any_, bindparam, case, func, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by

from crm.consent import CHANNELS  # consent facts; no row means the dealer's default: allowed
from crm.models import (
    READING,
    Complaint,
    Consent,
    Customer,
    Membership,
    ServiceVisit,
    Vehicle,
    table,
)

V, C, M, SV = table(Vehicle), table(Customer), table(Membership), table(ServiceVisit)
CP, CS = table(Complaint), table(Consent)
LO, HI = bindparam("lo", type_=Integer), bindparam("hi", type_=Integer)


@cache
def owners_query(dialect: str) -> Any:
    """The owners' statement for ``dialect``; parameters lo, hi and (PostgreSQL) owners."""
    return _postgresql() if dialect == "postgresql" else _generic()


def _columns(visits: Any, score: Any, complaints: Any, consents: Any) -> list[Any]:
    # The order crm.records unpacks.
    return [
        C.c.id,
        *(C.c[name] for name in ("name", "title", "birthday", "language", "segment")),
        C.c.timezone,
        func.coalesce(M.c.tier, "none").label("tier"),
        func.coalesce(M.c.points_cumulative, 0).label("points_cumulative"),
        func.coalesce(M.c.points_redeemable, 0).label("points_redeemable"),
        M.c.joined.label("membership_joined"),
        M.c.expires.label("membership_expires"),
        visits.c.last_visit.label("customer_last_visit_day"),
        func.coalesce(visits.c.max_repair, 0.0).label("max_repair_amount"),
        score.label("last_satisfaction"),
        func.coalesce(complaints.c.open, 0).label("open_complaints"),
        complaints.c.last_closed.label("last_complaint_closed"),
        *(consents.c[channel].label(f"consent_{channel}") for channel in CHANNELS),
    ]


def _repairs() -> Any:
    return case((SV.c.kind == "repair", SV.c.amount), else_=0.0)


def _visit_days() -> Any:
    return case((SV.c.kind != READING, SV.c.day))  # an odometer reading alone is no visit


def _complaints() -> Any:
    return select(
        func.sum(case((CP.c.closed.is_(None), 1), else_=0)).label("open"),
        func.max(CP.c.closed).label("last_closed"),
    )


def _consents() -> Any:
    allowed = case((CS.c.allowed, 1), else_=0)  # PostgreSQL has no max() of booleans
    return select(*(func.max(case((CS.c.channel == ch, allowed))).label(ch) for ch in CHANNELS))


def _postgresql() -> Any:
    # One index lookup per owner into each table, all their visits aggregated in one pass.
    # Three scalar subqueries over the visits and a scan of complaints and consents for the
    # batch's owners took twice as long. The owners come as an array: PostgreSQL then knows how
    # many to expect (its estimate for a subquery's distinct ids was 200x off, and the cost that
    # followed switched on JIT compilation: half a second a query).
    fleet = V.alias("fleet")
    satisfaction = func.array_agg(
        aggregate_order_by(SV.c.satisfaction, SV.c.day.desc(), SV.c.id.desc())
    ).filter(SV.c.satisfaction.is_not(None))
    visits = (
        select(
            func.max(_visit_days()).label("last_visit"),
            func.max(_repairs()).label("max_repair"),
            satisfaction[1].label("score"),
        )
        .join(fleet, SV.c.vehicle_id == fleet.c.id)
        .where(fleet.c.customer_id == C.c.id)
        .lateral("visits")
    )
    complaints = _complaints().where(CP.c.customer_id == C.c.id).lateral("complaints_of")
    consents = _consents().where(CS.c.customer_id == C.c.id).lateral("consents_of")
    return (
        select(*_columns(visits, visits.c.score, complaints, consents))
        .outerjoin(M, M.c.customer_id == C.c.id)
        .outerjoin(visits, true())
        .outerjoin(complaints, true())
        .outerjoin(consents, true())
        .where(C.c.id == any_(bindparam("owners", type_=ARRAY(Integer))))
    )


def _generic() -> Any:
    # SQLite groups the owners' visits through its indexes, in a third of the time of lookups
    # per owner; complaints and consents are small tables, grouped once for all the owners.
    fleet = V.alias("fleet")
    owned = select(V.c.customer_id).where(V.c.id.between(LO, HI)).distinct()
    visits = (
        select(
            fleet.c.customer_id,
            func.max(_visit_days()).label("last_visit"),
            func.max(_repairs()).label("max_repair"),
        )
        .join(SV, SV.c.vehicle_id == fleet.c.id)
        .where(fleet.c.customer_id.in_(owned))
        .group_by(fleet.c.customer_id)
        .subquery()
    )
    mine = select(fleet.c.id).where(fleet.c.customer_id == C.c.id).correlate(C)
    score = (
        select(SV.c.satisfaction)
        .where(SV.c.vehicle_id.in_(mine), SV.c.satisfaction.is_not(None))
        .order_by(SV.c.day.desc(), SV.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    complaints = _per_owner(_complaints(), CP.c.customer_id, owned)
    consents = _per_owner(_consents(), CS.c.customer_id, owned)
    return (
        select(*_columns(visits, score, complaints, consents))
        .outerjoin(M, M.c.customer_id == C.c.id)
        .outerjoin(complaints, complaints.c.customer_id == C.c.id)
        .outerjoin(consents, consents.c.customer_id == C.c.id)
        .outerjoin(visits, visits.c.customer_id == C.c.id)
        .where(C.c.id.in_(owned))
    )


def _per_owner(aggregates: Any, owner: Any, owned: Any) -> Any:
    """``aggregates`` grouped by ``owner`` for the ``owned`` customers, as a subquery."""
    return aggregates.add_columns(owner).where(owner.in_(owned)).group_by(owner).subquery()
