"""The sweep: every vehicle's facts against every campaign, as ledger rows, range by range.

``MILEPOST_SWEEP_LEDGER_ONLY=1`` stops a sweep at the ledger: `evaluate_range` reports no row as
due, so the `evaluate` actor queues no deliveries and the rows wait, pending, for the
scheduler's release tick. Benchmarks use it to time the sweep alone (bench/sweep.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from crm.records import id_ranges, load_records
from rules.campaign import Campaign
from rules.facts import derive
from worker import collector, ledger, sweep_runs
from worker.enqueue import enqueue_all
from worker.ledger_batch import LedgerBatch
from worker.runtime import Runtime
from worker.stored_facts import Kept, kept_facts

LEDGER_ONLY = "MILEPOST_SWEEP_LEDGER_ONLY"
__all__ = ["LEDGER_ONLY", "enqueue_all", "evaluate_range", "plan_ranges", "plan_run"]


def plan_ranges(rt: Runtime, batch: int | None = None) -> list[tuple[int, int]]:
    """The vehicle-id ranges one sweep is split into."""
    with rt.engine.connect() as conn:
        return id_ranges(conn, batch or rt.settings.sweep_batch)


def plan_run(rt: Runtime, run_id: int | None, batch: int | None = None) -> list[tuple[int, int]]:
    """The ranges of a sweep, their number recorded in its run (before any is queued)."""
    ranges = plan_ranges(rt, batch)
    if run_id is not None:
        sweep_runs.planned(rt.engine, run_id, len(ranges))
    return ranges


def evaluate_range(
    rt: Runtime,
    lo: int,
    hi: int,
    as_of: str,
    now: datetime | None = None,
    run_id: int | None = None,
) -> list[int]:
    """Match vehicles lo..hi as of ``as_of``; returns the ids of new ledger rows due now.

    With ``run_id`` the range is also marked done in that sweep run, with its rows.
    """
    moment = datetime.fromisoformat(as_of)
    now = now or max(datetime.now(UTC), moment)
    with collector.paused():  # a range makes no cyclic garbage; see worker.collector
        due = _evaluate(rt, lo, hi, moment, now, run_id)
    return [] if os.environ.get(LEDGER_ONLY, "") not in ("", "0") else due


def _evaluate(
    rt: Runtime, lo: int, hi: int, moment: datetime, now: datetime, run_id: int | None
) -> list[int]:
    tz, holidays, rates = rt.settings.tz, rt.holidays, rt.settings.km_per_day
    local_day = moment.astimezone(tz).date()
    matches = rt.evaluator.matches
    with rt.engine.connect() as conn:
        records = load_records(conn, lo, hi)
    # campaign id -> (campaign, [(subject id, record, facts)]), in the Evaluator's order
    hits: dict[str, tuple[Campaign, list[tuple[int, Mapping[str, Any], Any]]]] = {}
    for record in records:
        facts = derive(record, moment, tz=tz, holidays=holidays, km_per_day=rates)
        for campaign in matches(facts, customer_campaigns=record["is_primary"]):
            subject = record["vehicle_id" if campaign.subject == "vehicle" else "customer_id"]
            entry = hits.get(campaign.id)
            if entry is None:
                entry = hits[campaign.id] = (campaign, [])
            entry[1].append((subject, record, facts))
    kept = _kept_facts(rt)
    with rt.engine.begin() as conn:
        subjects = (
            (campaign, [subject for subject, _, _ in found]) for campaign, found in hits.values()
        )
        seen = ledger.in_ledger_in_range(conn, subjects, lo, hi, local_day)
        # The batch writes each row's stored facts straight from all of them (kept per campaign).
        batch = LedgerBatch(conn.dialect, local_day, moment, now, kept=kept)
        for campaign, found in hits.values():
            skip = seen.get(campaign.id, ())
            for subject, owner, all_facts in found:
                if subject not in skip:
                    batch.add(campaign, owner, all_facts)
        due = batch.insert(conn)
        if run_id is not None:  # last: the run's row stays locked only until the commit
            sweep_runs.range_done(conn, run_id, lo, hi)
    return due


_kept: tuple[object, object, dict[str, Kept | None]] | None = None


def _kept_facts(rt: Runtime) -> dict[str, Kept | None]:
    # Worked out once per set of campaigns and templates (a new Runtime has new ones).
    global _kept
    campaigns, templates = rt.campaigns, rt.templates
    cached = _kept
    if cached is None or cached[0] is not campaigns or cached[1] is not templates:
        kept = {cid: kept_facts(c, templates) for cid, c in campaigns.items()}
        cached = _kept = (campaigns, templates, kept)
    return cached[2]
