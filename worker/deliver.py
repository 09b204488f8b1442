"""Deliver one ledger row: claim it, check the policies, render, hand it to its channel, record.

Claim, then act: the conditional UPDATE lets exactly one job move a row to `sending`; every
other job (a retry, a duplicate message, a second worker) finds nothing to claim and stops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from channels.base import ChannelError, Message
from channels.call import CallListChannel
from channels.outbox import OutboxChannel
from crm.models import Customer, Delivery, table
from worker import policies, throttle
from worker.runtime import Runtime

log = logging.getLogger("milepost.deliver")
D, C = table(Delivery), table(Customer)
CLAIMABLE = ("pending", "retry", "deferred")
MAX_ATTEMPTS = 5
BACKOFF_S = 30.0
BACKOFF_CAP_S = 3600.0
THROTTLE_WAIT_S = 1.0


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str | None = None
    retry_in: float | None = None  # seconds until the next attempt (retry, throttled)


def claim(conn: Connection, delivery_id: int, now: datetime) -> dict[str, Any] | None:
    """Move the row to `sending` if it is claimable and due; the row, or None if another has it."""
    won = conn.execute(
        update(D)
        .where(D.c.id == delivery_id, D.c.status.in_(CLAIMABLE), D.c.due_at <= now)
        .values(status="sending", attempts=D.c.attempts + 1, updated_at=now, sent_at=now)
    )
    if won.rowcount != 1:
        return None
    return dict(conn.execute(select(D).where(D.c.id == delivery_id)).mappings().one())


def record(conn: Connection, delivery_id: int, now: datetime, **values: Any) -> None:
    conn.execute(update(D).where(D.c.id == delivery_id).values(updated_at=now, **values))


def deliver(rt: Runtime, delivery_id: int, now: datetime | None = None) -> Outcome:
    """Run one delivery to its next state; never sends a row twice."""
    now = now or datetime.now(UTC)
    with rt.engine.begin() as conn:
        channel: str | None = conn.execute(
            select(D.c.channel).where(D.c.id == delivery_id)
        ).scalar()
        # Over the provider's rate: wait without claiming, so it costs no attempt. The outbox
        # and the call list are ours, not a provider's, and have no rate to respect.
        adapter = rt.channels.get(channel or "")
        ours = adapter is None or isinstance(adapter, OutboxChannel | CallListChannel)
        if channel and not ours and not throttle.take_slot(rt.settings, channel):
            return Outcome("throttled", retry_in=THROTTLE_WAIT_S)
        row = claim(conn, delivery_id, now)
        if row is None:
            return Outcome("skipped", "not claimable: already handled, or not due")
        customer = conn.execute(select(C).where(C.c.id == row["customer_id"])).mappings().one()
        decision = policies.check(rt, conn, row, customer, now)
        if decision.status != "send":
            # A deferred row keeps its claimability and becomes due when its window opens.
            due = {"due_at": decision.until} if decision.until else {}
            record(conn, delivery_id, now, status=decision.status, reason=decision.reason, **due)
            return Outcome(decision.status, decision.reason)
    try:
        message = _message(rt, row, decision.recipient, now)
    except Exception as exc:  # a template that passed `campaigns check` but failed on this data
        with rt.engine.begin() as conn:
            record(conn, delivery_id, now, status="failed", reason=f"render: {exc}"[:200])
        log.exception("delivery %s: rendering failed", delivery_id)
        return Outcome("failed", "render")
    return _send(rt, row, message, now)


def _send(rt: Runtime, row: dict[str, Any], message: Message, now: datetime) -> Outcome:
    delivery_id = row["id"]
    channel = rt.channels[row["channel"]]
    try:
        receipt = channel.send(message)
    except ChannelError as exc:
        with rt.engine.begin() as conn:
            if exc.permanent:
                record(
                    conn,
                    delivery_id,
                    now,
                    status="failed",
                    reason=str(exc)[:200],
                    error_code=exc.code,
                )
                return Outcome("failed", str(exc))
            if row["attempts"] >= MAX_ATTEMPTS:
                record(
                    conn,
                    delivery_id,
                    now,
                    status="failed",
                    error_code=exc.code,
                    reason=f"gave up after {row['attempts']} attempts: {exc}"[:200],
                )
                return Outcome("failed", "retries exhausted")
            wait = min(BACKOFF_S * 2 ** (row["attempts"] - 1), BACKOFF_CAP_S)
            record(
                conn,
                delivery_id,
                now,
                status="retry",
                reason=str(exc)[:200],
                error_code=exc.code,
                due_at=now + timedelta(seconds=wait),
            )
            return Outcome("retry", str(exc), retry_in=wait)
    except Exception as exc:
        # We cannot tell whether the provider took it: never resend blindly.
        with rt.engine.begin() as conn:
            record(
                conn,
                delivery_id,
                now,
                status="unknown",
                reason=f"{type(exc).__name__}: {exc}"[:200],
            )
        log.exception("delivery %s: outcome unknown", delivery_id)
        return Outcome("unknown", str(exc))
    with rt.engine.begin() as conn:
        record(
            conn,
            delivery_id,
            now,
            status=receipt.status,
            provider_id=receipt.provider_id,
            reason=None,
        )
    return Outcome(receipt.status)


def _message(rt: Runtime, row: dict[str, Any], recipient: str, now: datetime) -> Message:
    facts = dict(row["facts"] or {})
    context = {**facts, "dealer": rt.dealer()}
    language = facts.get("customer", {}).get("language", "zh")
    rendered = rt.templates.render(row["template"], language, context, row["channel"])
    step = rt.campaigns[row["campaign"]].steps[row["step"]]
    due_by = None
    if row["channel"] == "call":
        due_by = row["due_at"] + (step.due or timedelta(days=2))
    return Message(
        delivery_id=row["id"],
        channel=row["channel"],
        recipient=recipient,
        body=rendered.body,
        subject=rendered.subject,
        customer_id=row["customer_id"],
        vehicle_id=row["vehicle_id"],
        campaign=row["campaign"],
        priority=row["priority"],
        due_by=due_by,
        segments=rendered.segments,
    )
