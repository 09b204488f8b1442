"""The long-running commands: `milepost worker`, `scheduler`, `api`, and their `health` check."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer
from sqlalchemy import text

from worker.errors import friendly


def _logging() -> None:
    from channels.privacy import MaskingFilter

    handler = logging.StreamHandler()
    handler.addFilter(MaskingFilter())
    logging.basicConfig(
        level=logging.INFO,
        handlers=[handler],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@friendly
def worker(
    processes: Annotated[int, typer.Option(envvar="MILEPOST_WORKER_PROCESSES")] = 2,
    threads: Annotated[int, typer.Option(envvar="MILEPOST_WORKER_THREADS")] = 8,
) -> None:
    """Run Dramatiq worker processes on the configured broker (SIGTERM stops them gracefully)."""
    from worker.settings import get_settings

    if not get_settings().broker_url:
        raise typer.BadParameter("set MILEPOST_BROKER_URL (redis://… or amqp://…) to run workers")
    # Dramatiq's own CLI supervises the processes, restarts dead ones and handles signals.
    args = [
        sys.executable,
        "-m",
        "dramatiq",
        "worker.actors",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
    ]
    os.execvp(args[0], args)


@friendly
def scheduler() -> None:
    """Run the scheduler: the daily sweep and housekeeping. Run exactly one."""
    from worker import scheduler as scheduling

    _logging()
    scheduling.run()


@friendly
def api(
    host: Annotated[str, typer.Option(envvar="MILEPOST_API_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="MILEPOST_API_PORT")] = 8000,
) -> None:
    """Serve the HTTP API: call list, Twilio webhooks, unsubscribe links, events."""
    from worker.api.app import serve

    _logging()
    serve(host, port)


@friendly
def health(
    worker: Annotated[bool, typer.Option("--worker", help="Also check the broker")] = False,
) -> None:
    """Exit 0 when the database (and with --worker the broker) answers; for health checks."""
    from crm.db import get_engine
    from worker.settings import get_settings

    settings = get_settings()
    with get_engine(settings.database_url).connect() as conn:
        conn.execute(text("SELECT 1"))
    if worker and settings.broker_url and settings.broker_url.startswith("redis"):
        import redis

        redis.Redis.from_url(settings.broker_url, socket_timeout=5).ping()
    typer.echo("ok")
