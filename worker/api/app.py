"""The ASGI app `milepost api` serves: health, Twilio webhooks, unsubscribe links, events."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from worker.api import deps, events, twilio, unsubscribe
from worker.runtime import Runtime

log = logging.getLogger("milepost.api")


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The app, bound to ``runtime`` (tests) or else to this process's, built on first use."""
    app = FastAPI(title="Milepost", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = runtime
    app.include_router(twilio.router)
    app.include_router(unsubscribe.router)
    app.include_router(events.router)
    app.add_api_route("/health", health, methods=["GET"])
    return app


def health(rt: Annotated[Runtime, Depends(deps.runtime)]) -> JSONResponse:
    """200 when the database answers, 503 when it does not: for load balancers and compose."""
    try:
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # whatever the cause, the answer is "not ready", not a 500
        log.warning("health: the database does not answer: %s", exc)
        return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
    return JSONResponse({"status": "ok"})


def serve(host: str, port: int) -> None:
    """Serve the API with uvicorn until SIGTERM or Ctrl-C."""
    import uvicorn

    # log_config=None: uvicorn's loggers go through the root handler and its masking filter.
    uvicorn.run(create_app(), host=host, port=port, log_config=None)
