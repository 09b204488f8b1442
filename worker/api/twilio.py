"""Twilio webhooks: status callbacks move ledger rows on; inbound STOP / START set SMS consent."""

from __future__ import annotations

import logging
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import and_, or_, select, update

from channels.privacy import mask_phone
from channels.sms import OPTED_OUT_CODE
from crm.consent import set_consent
from crm.models import Customer, Delivery, table
from worker.api.deps import runtime
from worker.api.signature import Params, signed_params
from worker.runtime import Runtime

log = logging.getLogger("milepost.api.twilio")
router = APIRouter(prefix="/twilio")
D, C = table(Delivery), table(Customer)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

# The ledger states each Twilio status may replace. Callbacks arrive late and out of order, so
# a status only ever moves a row forward: final states are never replaced, and "sent" replaces
# only the states that meant "we did not know". Statuses before "sent" (accepted, queued,
# sending, scheduled) and ones SMS never has (read, canceled) tell the ledger nothing.
UNSETTLED = ("sending", "unknown")
MOVES: dict[str, tuple[str, ...]] = {
    "sent": UNSETTLED,
    "delivered": (*UNSETTLED, "sent"),
    "undelivered": (*UNSETTLED, "sent"),
    "failed": (*UNSETTLED, "sent"),
}
FAILED = ("undelivered", "failed")
ROW_ID = Query(ge=1, le=2**31 - 1)  # deliveries.id is a 32-bit integer on PostgreSQL

OPT_OUT = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "退订", "td"})
OPT_IN = frozenset({"start", "unstop", "yes"})


def twiml() -> Response:
    """An empty TwiML answer: Twilio sends no automatic reply on our behalf."""
    return Response(EMPTY_TWIML, media_type="text/xml")


@router.post("/status")
def status_callback(
    params: Annotated[Params, Depends(signed_params)],
    rt: Annotated[Runtime, Depends(runtime)],
    delivery: Annotated[int | None, ROW_ID] = None,
) -> Response:
    """Record what Twilio says became of a message we sent (unknown SIDs are ignored).

    The row is the one holding the SID; or, when the signed URL names a ``delivery`` whose SID
    is not recorded yet, that one: Twilio can call back before the worker has recorded the SID,
    or after a worker died without recording it (the row is then `unknown`). A row holding
    another SID is never matched by its id.
    """
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    reported = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    code = (params.get("ErrorCode") or "").strip()[:20] or None
    if not sid or reported not in MOVES:
        return Response(status_code=200)
    now = datetime.now(UTC)
    values: dict[str, Any] = {"status": reported, "updated_at": now, "reason": None}
    values["provider_id"] = sid  # unchanged when found by SID; recorded when found by id
    mine = D.c.provider_id == sid
    if delivery is not None:
        mine = or_(mine, and_(D.c.id == delivery, D.c.provider_id.is_(None)))
    if reported in FAILED:
        values["error_code"] = code
        values["reason"] = f"twilio: {reported}" + (f", error {code}" if code else "")
    with rt.engine.begin() as conn:
        moved = conn.execute(
            update(D)
            .where(D.c.channel == "sms", mine, D.c.status.in_(MOVES[reported]))
            .values(**values)
            .returning(D.c.id, D.c.customer_id)
        ).first()
        if moved is None:
            log.info(
                "twilio status %s for %s: no row to move (unknown, or already further)",
                reported,
                sid,
            )
            return Response(status_code=200)
        if code == OPTED_OUT_CODE:
            # The recipient had replied STOP where we did not see it: honour it for every campaign.
            set_consent(conn, moved.customer_id, "sms", False, "twilio-21610", now)
    log.info("delivery %s: twilio reports %s%s", moved.id, reported, f" ({code})" if code else "")
    return Response(status_code=200)


def keyword(body: str) -> str:
    """The reply as a keyword: trimmed, case-folded, full-width letters (ＳＴＯＰ) made ASCII."""
    return unicodedata.normalize("NFKC", body).strip().casefold()


@router.post("/inbound")
def inbound_sms(
    params: Annotated[Params, Depends(signed_params)],
    rt: Annotated[Runtime, Depends(runtime)],
) -> Response:
    """Opt the sender out of SMS on STOP, 退订, TD…, back in on START; any other text is ignored."""
    sender = (params.get("From") or "").strip()
    word = keyword(params.get("Body") or "")
    # With Advanced Opt-Out, Twilio also names the keyword class (its own custom keywords too).
    opt_type = (params.get("OptOutType") or "").strip().upper()
    if word in OPT_OUT or opt_type == "STOP":
        allowed, source = False, "sms-stop"
    elif word in OPT_IN or opt_type == "START":
        allowed, source = True, "sms-start"
    else:
        return twiml()
    if not sender:
        return twiml()
    now = datetime.now(UTC)
    with rt.engine.begin() as conn:
        # A shared family or fleet number is one phone: its STOP speaks for every customer on it.
        customers = conn.execute(select(C.c.id).where(C.c.phone == sender)).scalars().all()
        for customer_id in customers:
            set_consent(conn, customer_id, "sms", allowed, source, now)
    action = "opted in to" if allowed else "opted out of"
    log.info("%s %s SMS (%d customer(s))", mask_phone(sender), action, len(customers))
    return twiml()
