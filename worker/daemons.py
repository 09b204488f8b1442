"""The long-running commands: `milepost worker`, `scheduler`, `api`, and their `health` check."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import text

from worker.errors import friendly
from worker.settings import Settings

err = Console(stderr=True)
# Below compose's stop_grace_period (60 s): jobs in progress get this long to finish, then the
# worker requeues what it prefetched and exits before Docker resorts to SIGKILL.
SHUTDOWN_TIMEOUT_MS = 50_000
PREFETCH_PER_THREAD = 8  # Dramatiq's 2 per thread capped a thread at ~260 short jobs/s
# Dramatiq's main process waits this long for each worker process to boot before it starts
# the forks (our metrics server) and watches the workers; SIGTERM waits too. A worker killed
# while booting never reports in, so it was noticed only after the default 30 s. A boot takes
# 1-2 s of CPU; the metrics fork needs the first worker's imports done within this wait + 1 s.
# (Dramatiq 2 has no --worker-timeout: dramatiq_worker_timeout is how often idle threads poll.)
FORK_TIMEOUT_MS = 10_000
BROKER_TIMEOUT_S = 5
# The scheduler is unhealthy once its last finished tick is this many tick intervals old.
STALE_AFTER_TICKS = 3


def _logging() -> None:
    from channels.privacy import MaskingFilter

    handler = logging.StreamHandler()
    handler.addFilter(MaskingFilter())
    logging.basicConfig(
        level=logging.INFO,
        handlers=[handler],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def worker_command(
    settings: Settings,
    processes: int | None = None,
    threads: int | None = None,
    module: str = "worker.actors",
) -> tuple[list[str], dict[str, str]]:
    """The Dramatiq command line `milepost worker` runs on ``module``, and the variables it adds."""
    from worker.metrics import multiprocess_dir

    threads = threads or settings.worker_threads
    # Dramatiq 2 has no --prefetch flag: dramatiq.worker reads this variable at import.
    env = {
        "dramatiq_queue_prefetch": str(settings.worker_prefetch or PREFETCH_PER_THREAD * threads)
    }
    if settings.metrics_port:
        env["dramatiq_prom_db"] = env["PROMETHEUS_MULTIPROC_DIR"] = str(multiprocess_dir(settings))
    argv = [sys.executable, "-m", "dramatiq", module]
    argv += ["--processes", str(processes or settings.worker_processes)]
    argv += ["--threads", str(threads), "--worker-shutdown-timeout", str(SHUTDOWN_TIMEOUT_MS)]
    argv += ["--worker-fork-timeout", str(FORK_TIMEOUT_MS)]
    return argv, env


@friendly
def worker(
    processes: Annotated[
        int | None, typer.Option(help="Worker processes (default: MILEPOST_WORKER_PROCESSES)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Threads per process (default: MILEPOST_WORKER_THREADS)")
    ] = None,
) -> None:
    """Run Dramatiq worker processes on the configured broker (SIGTERM stops them gracefully)."""
    from worker.settings import get_settings

    settings = get_settings()
    if not settings.broker_url:
        raise typer.BadParameter("set MILEPOST_BROKER_URL (redis://… or amqp://…) to run workers")
    argv, extra = worker_command(settings, processes, threads)
    if "dramatiq_prom_db" in extra:
        # Files of processes killed last run would be counted forever: start empty.
        shutil.rmtree(extra["dramatiq_prom_db"], ignore_errors=True)
        os.makedirs(extra["dramatiq_prom_db"])
    # Dramatiq's master process forwards SIGTERM to the workers, which finish their jobs. If a
    # worker process dies it stops the rest and exits non-zero: the supervisor (compose's
    # restart policy) starts a fresh set, and the broker gives the dead one's messages back.
    os.execvpe(argv[0], argv, {**os.environ, **extra})


@friendly
def scheduler() -> None:
    """Run the scheduler: the daily sweep and housekeeping. Run exactly one."""
    from worker import scheduler as scheduling

    _logging()
    scheduling.run()


@friendly
def api(
    host: Annotated[str | None, typer.Option(help="Default: MILEPOST_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default: MILEPOST_API_PORT")] = None,
) -> None:
    """Serve the HTTP API: call list, Twilio webhooks, unsubscribe links, events."""
    from worker.api.app import serve
    from worker.settings import get_settings

    settings = get_settings()
    _logging()
    # uvicorn stops gracefully on SIGTERM, then raises the signal again with this handler in
    # place: exit 0, as the worker and scheduler do, rather than die "killed by SIGTERM".
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    serve(host or settings.api_host, port or settings.api_port)


def broker_problem(url: str) -> str | None:
    """Why the broker at ``url`` does not answer, or None when it does."""
    where = urlsplit(url).hostname or url.split(":", 1)[0]  # never print the password
    try:
        if url.startswith(("amqp://", "amqps://")):
            import pika

            params = pika.URLParameters(url)
            params.socket_timeout = params.blocked_connection_timeout = BROKER_TIMEOUT_S
            params.connection_attempts = 1
            pika.BlockingConnection(params).close()
        else:
            import redis

            client = redis.Redis.from_url(
                url, socket_timeout=BROKER_TIMEOUT_S, socket_connect_timeout=BROKER_TIMEOUT_S
            )
            client.ping()
    except Exception as exc:  # any failure is the same answer: unhealthy, and why
        detail = str(exc).strip() or "no connection"
        return f"the broker at {where} does not answer ({type(exc).__name__}: {detail})"
    return None


def _api_problem(settings: Settings) -> str | None:
    from urllib.request import urlopen

    host = settings.api_host if settings.api_host not in ("0.0.0.0", "", "::") else "127.0.0.1"
    url = f"http://{host}:{settings.api_port}/health"
    try:
        with urlopen(url, timeout=BROKER_TIMEOUT_S) as response:
            response.read()
    except Exception as exc:  # 503 (database down) and "connection refused" alike
        return f"the API at {url} does not answer ({exc})"
    return None


def scheduler_problem(settings: Settings) -> str | None:
    """Why the scheduler looks dead or stuck (no recent tick), or None when it ticks."""
    heartbeat = settings.scheduler_heartbeat
    try:
        age = max(0.0, time.time() - heartbeat.stat().st_mtime)
    except FileNotFoundError:
        return (
            "the scheduler is not running or has finished no tick since it started "
            f"({heartbeat} is missing); start `milepost scheduler`, or give it one"
            " MILEPOST_SCHEDULER_TICK_S to tick"
        )
    limit = STALE_AFTER_TICKS * settings.scheduler_tick_s
    if age > limit:
        return (
            f"the scheduler's last tick finished {age:.0f} s ago, over {STALE_AFTER_TICKS} "
            f"ticks of MILEPOST_SCHEDULER_TICK_S ({limit:g} s); see its log for why"
        )
    return None


@friendly
def health(
    worker: Annotated[bool, typer.Option("--worker", help="Also check the broker")] = False,
    api: Annotated[bool, typer.Option("--api", help="Also check the API's /health")] = False,
    scheduler: Annotated[
        bool, typer.Option("--scheduler", help="Also check the scheduler's last tick is recent")
    ] = False,
) -> None:
    """Exit 0 when the database answers, and with a flag the broker, the API or the scheduler."""
    from crm.db import get_engine
    from worker.settings import get_settings

    settings = get_settings()
    with get_engine(settings.database_url).connect() as conn:
        conn.execute(text("SELECT 1"))
    checked = ["database"]
    problem = None
    if worker:
        checked.append("broker")
        if not settings.broker_url:
            problem = "MILEPOST_BROKER_URL is not set: there is no broker for workers"
        else:
            problem = broker_problem(settings.broker_url)
    if api and problem is None:
        checked.append("API")
        problem = _api_problem(settings)
    if scheduler and problem is None:
        checked.append("scheduler")
        problem = scheduler_problem(settings)
    if problem:
        # soft_wrap: no line breaks inside a URL or path an operator may copy
        err.print(f"[red]Unhealthy: {escape(problem)}.[/red]", soft_wrap=True)
        raise typer.Exit(1)
    typer.echo(f"ok: the {', '.join(checked)} answered")
