"""Unsubscribe links: no login, a signed token names the customer and the channel.

GET only shows a confirmation page, because mail scanners and link previews fetch every URL in
a message; the opt-out itself is the POST, from the page's button or from a mail client's
RFC 8058 one-click request (``List-Unsubscribe=One-Click``, whose body needs no reading).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from channels.unsubscribe import InvalidToken, read_token
from crm.consent import CHANNELS, set_consent
from crm.models import Customer, table
from worker.api.deps import page, runtime
from worker.runtime import Runtime

log = logging.getLogger("milepost.api.unsubscribe")
router = APIRouter()
C = table(Customer)


def _read(rt: Runtime, token: str) -> tuple[int, str] | None:
    try:
        customer_id, channel = read_token(rt.settings.secret_key, token)
    except InvalidToken as exc:
        log.info("refused an unsubscribe token: %s", exc)
        return None
    # Signed by us, but only a channel with consent can be unsubscribed from.
    return (customer_id, channel) if channel in CHANNELS else None


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def confirm(token: str, rt: Annotated[Runtime, Depends(runtime)]) -> HTMLResponse:
    """The confirmation page with its unsubscribe button; changes nothing."""
    found = _read(rt, token)
    if found is None:
        return page("unsubscribe_invalid", 400, dealer=rt.settings.dealer_name)
    return page("unsubscribe", channel=found[1], dealer=rt.settings.dealer_name)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, rt: Annotated[Runtime, Depends(runtime)]) -> HTMLResponse:
    """Opt the token's customer out of its channel, at once; clicking twice is harmless."""
    found = _read(rt, token)
    if found is None:
        return page("unsubscribe_invalid", 400, dealer=rt.settings.dealer_name)
    customer_id, channel = found
    with rt.engine.begin() as conn:
        # A customer deleted since the mail went out gets nothing more anyway: nothing to record.
        if conn.execute(select(C.c.id).where(C.c.id == customer_id)).first():
            set_consent(conn, customer_id, channel, False, "unsubscribe-link", datetime.now(UTC))
    log.info("customer %s unsubscribed from %s by link", customer_id, channel)
    return page("unsubscribed", channel=channel, dealer=rt.settings.dealer_name)
