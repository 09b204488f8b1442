"""After a sweep fills the ledger, PostgreSQL reads each delivery's competitors by customer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from crm.db import get_engine
from crm.models import Customer, Delivery, table
from worker import claims, ledger_stats, policies
from worker.runtime import get_runtime, reset_runtime

pytestmark = pytest.mark.postgres


def _fill(url: str, count: int) -> None:
    now = datetime.now(UTC)
    customers = [{"id": i, "code": f"S{i}", "name": f"客户{i}"} for i in range(1, count + 1)]
    rows = [
        {
            **{"campaign": "first-service", "step": 0, "subject_id": i, "occurrence": "once"},
            **{"customer_id": i, "vehicle_id": i, "channel": "sms", "priority": 70},
            **{"template": "first-service/sms", "status": "pending", "attempts": 0},
            **{"due_at": now, "created_at": now, "updated_at": now},
        }
        for i in range(1, count + 1)
    ]
    with get_engine(url).begin() as conn:
        conn.execute(insert(table(Customer)), customers)
        conn.execute(insert(table(Delivery)), rows)


def _read_plan(url: str) -> str:
    rt = get_runtime()
    now = datetime.now(UTC)
    engine = get_engine(url)
    scope, since = policies.cap_scope(rt), policies.cap_since(rt, now)
    compiled = claims._read_statement(scope).compiled(engine.dialect)
    values = {"delivery_id": 7, "now": now, **since, **compiled.fixed}
    bound = {n: p(values[n]) if p else values[n] for n, p in compiled.binds.items()}
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("EXPLAIN " + compiled.sql, bound)
        return "\n".join(line for (line,) in cursor.fetchall())


def test_a_freshly_filled_ledger_is_analyzed_once_and_read_by_customer(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILEPOST_DATABASE_URL", pg_url)
    reset_runtime()
    _fill(pg_url, 20_000)  # at this size, without statistics, the plan went by status

    assert ledger_stats.refresh(get_engine(pg_url))  # never analyzed: at once
    assert not ledger_stats.refresh(get_engine(pg_url))  # nothing new since
    plan = _read_plan(pg_url)
    assert "ix_deliveries_customer" in plan
    assert "ix_deliveries_status_due" not in plan  # not every pending row's entry, per read
    reset_runtime()


def test_sqlite_needs_no_statistics(runtime: object) -> None:
    assert not ledger_stats.refresh(get_engine())
