"""The chaos benchmark's data: customers with faults, the rows fed in batches, the reads.

Used by bench/chaos.py. Customer ``i`` has phone ``phone(i)`` and exactly one delivery, so what
the fake Twilio created per phone lines up with the ledger row by row.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from chaos_parts import FakeTwilio
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from crm.db import get_engine
from crm.models import Customer, Delivery, table

log = logging.getLogger("bench.chaos")
D, C = table(Delivery), table(Customer)
WAITING = ("pending", "retry", "deferred")
# Per 100 customers (id % 100): the fault the fake Twilio, or the data, gives each.
INVALID, OPTED_OUT, RATE_LIMITED, NO_PHONE = 1, 2, 3, 4
FACTS = {"customer": {"title": "王先生", "language": "zh"}, "vehicle": {"model": "Model Y"}}


def phone(customer_id: int) -> str:
    return f"+86139{customer_id:08d}"


def _zone_in_window() -> str:
    # A zone where it is mid-afternoon now, so quiet hours (checked for real) let every SMS go.
    hour = datetime.now(UTC).hour
    offset = (14 - hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "UTC"


def add_customers(url: str, count: int, faults: bool) -> None:
    """Customers 1..count; with ``faults``, one in a hundred has no phone."""
    zone = _zone_in_window()
    customers = [
        {
            **{"id": i, "code": f"C{i}", "name": f"客户{i}", "timezone": zone},
            "phone": None if faults and i % 100 == NO_PHONE else phone(i),
        }
        for i in range(1, count + 1)
    ]
    with get_engine(url).begin() as conn:
        conn.execute(insert(C), customers)


def plan_faults(fake: FakeTwilio, count: int) -> str:
    """Script the fake's answers for the faulty recipients; what to expect, in a sentence."""
    for i in range(1, count + 1):
        if i % 100 == INVALID:
            fake.plan(phone(i), {"status": 400, "code": 21211})
        elif i % 100 == OPTED_OUT:
            fake.plan(phone(i), {"status": 400, "code": 21610})
        elif i % 100 == RATE_LIMITED:
            fake.plan(phone(i), {"status": 429, "code": 20429}, times=1)
    per = {k: len(range(k, count + 1, 100)) for k in (INVALID, OPTED_OUT, RATE_LIMITED, NO_PHONE)}
    return (
        f"faults: {per[INVALID]:,} invalid numbers and {per[OPTED_OUT]:,} opted out (failed), "
        f"{per[RATE_LIMITED]:,} rate-limited once (retried, then sent), "
        f"{per[NO_PHONE]:,} without a phone (suppressed)"
    )


class Feeder:
    """Adds one due marketing SMS per customer, a batch at a time, as the sweep's `evaluate`
    jobs do: insert the rows, commit, then queue their `deliver` jobs.

    A batch is added only while fewer than ``backlog`` rows wait, so the rows killed workers
    leave behind are a few batches, not the whole run, and the figures speak of crash safety
    rather than of a backlog. (A backlog is no longer a danger of its own: the scheduler
    queues a waiting row again only while the broker holds no `deliver` job, see
    worker.scheduler.queued_jobs; before that, a backlog slower to drain than
    MILEPOST_REQUEUE_QUIET_S was queued again and again, 190,000 rows for 52,000 done.)
    """

    def __init__(self, url: str, redis_url: str, total: int, batch: int, backlog: int) -> None:
        from worker.broker import make_broker
        from worker.settings import Settings

        self.engine: Engine = get_engine(url)
        self.producer = make_broker(Settings(broker_url=redis_url, metrics_port=0))
        self.total, self.batch, self.backlog = total, batch, backlog
        self.next_id = 1
        self.unqueued = 0  # rows inserted whose jobs Redis did not take: the tick's to find

    @property
    def done(self) -> bool:
        return self.next_id > self.total

    def feed(self, waiting: int) -> None:
        """Add batches while fewer than ``backlog`` rows wait; a server down waits a round."""
        while not self.done and waiting < self.backlog:
            ids = range(self.next_id, min(self.next_id + self.batch, self.total + 1))
            try:
                self._insert(ids)
            except DBAPIError as exc:  # PostgreSQL restarting: nothing was added, try again
                log.info("insert failed, will retry: %s", type(exc).__name__)
                return
            self.next_id, waiting = ids.stop, waiting + len(ids)
            try:
                self._enqueue(ids)
            except Exception as exc:  # Redis restarting: the rows wait for the scheduler
                log.info("enqueue failed: %s", type(exc).__name__)
                self.unqueued += len(ids)

    def _insert(self, ids: range) -> None:
        now = datetime.now(UTC)  # updated_at: when the job is queued, as the sweep stamps it
        rows = [
            {
                "id": i,  # the customer's: the fake's phone numbers map to rows one to one
                **{"campaign": "first-service", "step": 0, "subject_id": i, "occurrence": "once"},
                **{"customer_id": i, "vehicle_id": i, "channel": "sms", "priority": 70},
                **{"template": "first-service/sms", "status": "pending", "attempts": 0},
                **{"due_at": now - timedelta(minutes=1), "facts": FACTS},
                **{"created_at": now, "updated_at": now},
            }
            for i in ids
        ]
        # A commit whose answer a restart cut may have happened: the batch is tried again,
        # and the rows already there are skipped (they are queued once more: harmless).
        with self.engine.begin() as conn:
            conn.execute(pg_insert(D).on_conflict_do_nothing(), rows)

    def _enqueue(self, ids: range) -> None:
        from worker.actors import deliver_jobs  # the messages the sweep queues, built alike
        from worker.enqueue import enqueue_all

        enqueue_all(self.producer, deliver_jobs(ids))

    def close(self) -> None:
        self.producer.close()


class Ledger:
    """Reads the run's deliveries; ``statuses`` is None while the database does not answer."""

    def __init__(self, url: str) -> None:
        self.engine = get_engine(url)  # pre-ping: a connection cut by a restart is replaced

    def statuses(self) -> dict[str, int] | None:
        try:
            with self.engine.connect() as conn:
                query = select(D.c.status, func.count()).group_by(D.c.status)
                return {status: int(n) for status, n in conn.execute(query)}
        except DBAPIError:
            return None

    def phones(self) -> list[tuple[str | None, str]]:
        """(phone, status) of every row."""
        query = select(C.c.phone, D.c.status).join_from(D, C, C.c.id == D.c.customer_id)
        with self.engine.connect() as conn:
            return [(p, s) for p, s in conn.execute(query)]
