"""`POST /api/events`: the dealer's systems report what happened; Milepost reacts at once."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from worker import events
from worker.api import deps
from worker.runtime import Runtime

router = APIRouter()


class Event(BaseModel):
    event: str
    data: dict[str, Any]


@router.post("/api/events")
async def post_event(
    body: Event,
    rt: Annotated[Runtime, Depends(deps.runtime)],
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Apply one event (same columns as its import file) and deliver what became due."""
    token = rt.settings.api_token
    if not token:
        return JSONResponse({"error": "set MILEPOST_API_TOKEN to accept events"}, 503)
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        return JSONResponse({"error": "missing or wrong bearer token"}, 401)
    try:
        applied = await run_in_threadpool(events.apply, rt, body.event, body.data)
    except events.EventError as exc:
        return JSONResponse({"error": str(exc)}, 422)
    await run_in_threadpool(events.dispatch, rt, applied.due)
    return JSONResponse({"customer_id": applied.customer_id, "due": len(applied.due)}, 202)
