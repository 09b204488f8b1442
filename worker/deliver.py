"""Deliver one ledger row: read it, check the policies, claim it, render, send it, record.

Claim, then act: the conditional UPDATE lets exactly one job move a row to `sending`; every
other job (a retry, a duplicate message, a second worker) finds nothing to claim and stops.
The claim is committed before the provider is asked, so a worker that dies mid-send leaves
the row in `sending`, which the scheduler turns into `unknown`: never sent twice.

    pending/retry/deferred --policies--> suppressed | deferred | cancelled
                           --claim--> sending --> sent | failed | retry | unknown
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError

from channels.base import ChannelError, DeliveryUncertain, Message, Receipt
from channels.call import CallListChannel
from channels.outbox import OutboxChannel
from crm.consent import set_consent
from worker import claims, journeys, policies, throttle
from worker.prepared import Lease
from worker.runtime import Runtime

log = logging.getLogger("milepost.deliver")
THROTTLE_WAIT_S = 1.0
RECORD_WAITS_S = (0.5, 1.0, 2.0, 4.0)  # ~7.5 s: a PostgreSQL restart here took 4 s
# Provider codes that mean "the customer opted out", recorded in consents as they come back.
OPTED_OUT = {("sms", "21610")}


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str | None = None
    retry_in: float | None = None  # seconds until the next attempt (retry, throttled)


class DeliveryJobError(Exception):
    """Rows of a `deliver` job raised: the job is retried for them."""


@dataclass(frozen=True)
class Done:
    raised: list[int]  # rows whose delivery raised (left untouched, or in `sending`)
    throttled: list[int]  # rows not tried: the provider's rate was reached


def deliver_all(rt: Runtime, delivery_ids: list[int]) -> Done:
    """Deliver rows one after the other; a row that raises does not stop the others."""
    raised: list[int] = []
    with Lease(rt.engine) as db:  # one connection for the job's rows
        for at, delivery_id in enumerate(delivery_ids):
            try:
                outcome = deliver(rt, delivery_id, db=db)
            except Exception:
                log.exception("delivery %s: raised; its job will be retried", delivery_id)
                raised.append(delivery_id)
                db.discard()  # it may be what failed
                continue
            if outcome.status == "throttled":  # the rest would be throttled too
                return Done(raised, list(delivery_ids[at:]))
    return Done(raised, [])


def deliver(
    rt: Runtime, delivery_id: int, now: datetime | None = None, db: Lease | None = None
) -> Outcome:
    """Run one delivery to its next state; never sends a row twice."""
    if db is None:
        with Lease(rt.engine) as own:
            return deliver(rt, delivery_id, now, own)
    now = now or datetime.now(UTC)
    ready = _claim(rt, claims.DeliveryRows(db.get(), rt.engine.dialect), delivery_id, now)
    if isinstance(ready, Outcome):
        return ready
    row, recipient = ready
    try:
        message = _message(rt, row, recipient)
    except Exception as exc:  # a template that passed `campaigns check` but failed on this data
        log.exception("delivery %s: rendering failed", delivery_id)
        return _record(rt, db, row, now, "failed", reason=f"render: {exc}")
    try:
        receipt = rt.channels[row["channel"]].send(message)
    except ChannelError as exc:
        return _failed(rt, db, row, now, exc, message.segments)
    except Exception as exc:
        # We cannot tell whether the provider took it: never resend blindly.
        log.exception("delivery %s: outcome unknown", delivery_id)
        reason = f"{type(exc).__name__}: {exc}"
        unknown: dict[str, Any] = {"reason": reason, "segments": message.segments, "sent_at": now}
        return _record(rt, db, row, now, "unknown", tried=True, **unknown)
    return _sent(rt, db, row, now, receipt, message)


def _claim(
    rt: Runtime, rows: claims.DeliveryRows, delivery_id: int, now: datetime
) -> Outcome | tuple[dict[str, Any], str]:
    """The claimed row and its recipient; or the outcome, when it is not to be sent now."""
    row = rows.read(delivery_id, now, policies.cap_scope(rt), policies.cap_since(rt, now))
    if row is None:
        return Outcome("skipped", "not claimable: already handled, or not due")
    decision = policies.check(rt, row, now)
    if decision.status == "send" and row["step"] > 0:
        # A journey's later step: its `unless:` is judged on the facts of today, not the match.
        with rt.engine.connect() as conn:
            cancelled = journeys.cancel_reason(rt, conn, row, now)
        if cancelled:
            decision = policies.Decision("cancelled", cancelled)
    if decision.status != "send":
        # A deferred row stays claimable and becomes due when its window opens.
        if not rows.settle(row, now, decision.status, decision.reason, decision.until):
            return Outcome("skipped", "another job changed the row first")
        return Outcome(decision.status, decision.reason)
    channel = rt.channels[row["channel"]]
    # Over the provider's rate: leave the row as it is and come back shortly; nothing was
    # claimed, so it costs no attempt. The outbox and the call list are ours: no rate.
    if not isinstance(channel, OutboxChannel | CallListChannel) and not throttle.take_slot(
        rt.settings, row["channel"]
    ):
        return Outcome("throttled", retry_in=THROTTLE_WAIT_S)
    if not rows.claim(row, now):
        return Outcome("skipped", "another job claimed the row first")
    return row, decision.recipient


def _sent(
    rt: Runtime,
    db: Lease,
    row: dict[str, Any],
    now: datetime,
    receipt: Receipt,
    message: Message,
) -> Outcome:
    return _record(
        rt,
        db,
        row,
        now,
        receipt.status,
        provider_id=receipt.provider_id,
        segments=message.segments,
        tried=True,
        sent_at=now,
    )


def _failed(
    rt: Runtime,
    db: Lease,
    row: dict[str, Any],
    now: datetime,
    exc: ChannelError,
    segments: int | None,
) -> Outcome:
    """Uncertain -> unknown; permanent -> failed; transient -> retry with backoff, or failed."""
    reason, code = str(exc), exc.code
    if isinstance(exc, DeliveryUncertain):  # before `permanent`: a resend could be a duplicate
        # It may have gone out, and been billed: keep its segments with it.
        unknown: dict[str, Any] = {"reason": reason, "error_code": code, "segments": segments}
        unknown["sent_at"] = now
        return _record(rt, db, row, now, "unknown", tried=True, **unknown)
    if exc.permanent:
        opt_out = (row["channel"], code) in OPTED_OUT
        return _record(
            rt,
            db,
            row,
            now,
            "failed",
            reason=reason,
            error_code=code,
            tried=True,
            opt_out=opt_out,
        )
    attempt = row["attempts"] + 1
    settings = rt.settings
    if attempt >= settings.retry_max_attempts:
        reason = f"gave up after {attempt} attempts: {exc}"
        return _record(rt, db, row, now, "failed", reason=reason, error_code=code, tried=True)
    wait = backoff(attempt, settings.retry_backoff_s, settings.retry_backoff_cap_s)
    due = now + timedelta(seconds=wait)
    _record(rt, db, row, now, "retry", reason=reason, error_code=code, tried=True, due_at=due)
    return Outcome("retry", reason, retry_in=wait)


def backoff(attempt: int, first_s: float, cap_s: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, …): doubling, capped."""
    return float(min(first_s * 2 ** (attempt - 1), cap_s))


def _record(
    rt: Runtime,
    db: Lease,
    row: dict[str, Any],
    now: datetime,
    status: str,
    *,
    opt_out: bool = False,
    **outcome: Any,
) -> Outcome:
    """Commit the outcome; a database that is briefly away (a restart) is waited for.

    Once the provider has the message, failing here would leave the row `sending`, later
    `unknown`: a message we know went out would be reported as maybe-sent.
    """
    unavailable = (OperationalError, rt.engine.dialect.loaded_dbapi.OperationalError)
    for wait in (*RECORD_WAITS_S, None):
        try:
            return _record_once(rt, db, row, now, status, opt_out=opt_out, **outcome)
        except unavailable:
            if wait is None:
                raise
            log.warning(
                "delivery %s: database unavailable; recording again in %s s", row["id"], wait
            )
            db.discard()  # the next attempt checks out a connection that works
            time.sleep(wait)
    raise AssertionError("unreachable")


def _record_once(
    rt: Runtime,
    db: Lease,
    row: dict[str, Any],
    now: datetime,
    status: str,
    *,
    opt_out: bool = False,
    **outcome: Any,
) -> Outcome:
    if opt_out:  # the outcome and the opt-out, in one transaction
        with rt.engine.begin() as conn:
            values = claims.recorded(row["id"], now, status, **outcome)
            claims.RECORD.rowcount(conn.connection.dbapi_connection, rt.engine.dialect, values)
            set_consent(conn, row["customer_id"], row["channel"], False, "provider-opt-out", now)
    else:
        claims.DeliveryRows(db.get(), rt.engine.dialect).record(row["id"], now, status, **outcome)
    return Outcome(status, outcome.get("reason"))


def _message(rt: Runtime, row: dict[str, Any], recipient: str) -> Message:
    facts = dict(row["facts"] or {})
    context = {**facts, "dealer": rt.dealer()}
    language = facts.get("customer", {}).get("language", "zh")
    rendered = rt.templates.render(row["template"], language, context, row["channel"])
    due_by = None
    if row["channel"] == "call":
        step = rt.campaigns[row["campaign"]].steps[row["step"]]
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
