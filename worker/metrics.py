"""Prometheus metrics: Dramatiq's per-message numbers and Milepost's ledger, on one endpoint.

The worker daemon serves them at MILEPOST_METRICS_HOST:MILEPOST_METRICS_PORT (any path,
`/metrics` by convention) from a process of its own beside the worker processes. Dramatiq's
counters come from the worker processes through prometheus_client's multiprocess files.
Milepost's numbers are read from the database at scrape time, so every worker on every machine
reports the same truth and a restart loses nothing.

prometheus_client is imported inside functions on purpose: it picks its multiprocess mode from
PROMETHEUS_MULTIPROC_DIR when first imported, and Dramatiq sets that only at process boot.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.middleware.prometheus import Prometheus
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from crm.models import CallTask, Delivery, table
from worker.settings import Settings

log = logging.getLogger("milepost.metrics")
D, T = table(Delivery), table(CallTask)
MILEPOST_NAMES = ("milepost_matches_total", "milepost_deliveries", "milepost_calls_open")


class Metrics(Prometheus):
    """Dramatiq's Prometheus middleware, exposed by Milepost's server instead of its own."""

    @property
    def forks(self) -> list[Any]:
        return [serve]

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: Any) -> None:
        # Producers (the scheduler, the API, `milepost sweep`) never boot as workers, so they
        # have no counters to bump; only a worker re-enqueueing a retry counts one.
        if hasattr(self, "total_retried_messages"):
            super().after_enqueue(broker, message, delay)


def multiprocess_dir(settings: Settings) -> Path:
    """Where this worker daemon's processes keep their multiprocess files (one per port)."""
    return Path(tempfile.gettempdir()) / f"milepost-prometheus-{settings.metrics_port}"


class LedgerCollector:
    """Matches, deliveries by status and channel, and open calls, counted in the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily("milepost_ledger_up", "1 when the database answered this scrape.")
        try:
            matches, deliveries, calls_open = self._read()
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        family = CounterMetricFamily(
            "milepost_matches", "Campaign matches recorded in the ledger.", labels=["campaign"]
        )
        for campaign, count in sorted(matches.items()):
            family.add_metric([campaign], count)
        yield family
        gauge = GaugeMetricFamily(
            "milepost_deliveries", "Ledger rows by status.", labels=["status", "channel"]
        )
        for (status, channel), count in sorted(deliveries.items()):
            gauge.add_metric([status, channel], count)
        yield gauge
        yield GaugeMetricFamily(
            "milepost_calls_open", "Calls waiting on the call-center's list.", value=calls_open
        )

    def _read(self) -> tuple[Counter[str], Counter[tuple[str, str]], int]:
        # One scan of the ledger for both numbers: a match is the first step of its journey.
        query = select(D.c.campaign, D.c.step, D.c.status, D.c.channel, func.count()).group_by(
            D.c.campaign, D.c.step, D.c.status, D.c.channel
        )
        matches: Counter[str] = Counter()
        deliveries: Counter[tuple[str, str]] = Counter()
        with self.engine.connect() as conn:
            for campaign, step, status, channel, count in conn.execute(query):
                deliveries[(status, channel)] += count
                if step == 0:
                    matches[campaign] += count
            calls_open = conn.execute(
                select(func.count()).select_from(T).where(T.c.status == "open")
            ).scalar_one()
        return matches, deliveries, int(calls_open)


def exposition(engine: Engine, folder: str | None) -> tuple[bytes, str]:
    """The current metrics in Prometheus' text format, and its content type."""
    import prometheus_client as prom
    from prometheus_client import multiprocess

    registry = prom.CollectorRegistry()
    if folder:
        multiprocess.MultiProcessCollector(registry, path=folder)
    registry.register(LedgerCollector(engine))
    return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        body, content_type = exposition(self.server.engine, self.server.folder)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)  # a scrape every few seconds is not news


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    engine: Engine
    folder: str | None


def serve() -> int:
    """Serve the metrics until stopped; Dramatiq runs this in a process of its own."""
    from dramatiq.middleware.prometheus import DB_PATH

    from crm.db import get_engine
    from worker.settings import get_settings

    settings = get_settings()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = DB_PATH
    server = _Server((settings.metrics_host, settings.metrics_port), _Handler)
    server.engine = get_engine(settings.database_url)
    server.folder = DB_PATH
    log.info("metrics at http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    server.serve_forever()
    return 0
