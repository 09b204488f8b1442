"""Twilio webhook authentication: only requests signed with our auth token get through.

Twilio signs the exact URL it was told to call plus the POST parameters. Behind a proxy or a
tunnel the URL this process sees differs from that one, so the public base URL is used when set.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, HTTPException, Request
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator

from worker.api.deps import runtime
from worker.runtime import Runtime

log = logging.getLogger("milepost.api.twilio")
# Twilio's messaging webhooks are a few hundred bytes; anything far larger is not from Twilio.
MAX_BODY = 64 * 1024
Params = ImmutableMultiDict[str, str]


def public_url(request: Request, base_url: str | None) -> str:
    """The URL Twilio signed: ``base_url`` + path (+ query), or the URL as received."""
    if not base_url:
        return str(request.url)
    query = request.url.query
    return base_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


async def signed_params(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Params:
    """The form parameters of a request Twilio signed; 403 for anything else, 503 unconfigured."""
    token = rt.settings.twilio_auth_token
    if not token:
        # Without the token nothing can be verified, and unverified data is never acted on.
        why = "Twilio webhooks are not configured: set MILEPOST_TWILIO_AUTH_TOKEN"
        raise HTTPException(503, why)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        log.warning("refused an unsigned request to %s", request.url.path)
        raise HTTPException(403, "missing X-Twilio-Signature")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, "request body too large for a Twilio webhook")
    # A multi-dict: RequestValidator signs every value of a repeated parameter.
    params: Params = ImmutableMultiDict(
        parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    )
    url = public_url(request, rt.settings.public_base_url)
    if not RequestValidator(token).validate(url, params, signature):
        log.warning("refused a request to %s: its Twilio signature does not match", url)
        raise HTTPException(403, "X-Twilio-Signature does not match")
    return params
