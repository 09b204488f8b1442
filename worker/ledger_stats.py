"""Keep PostgreSQL's statistics on the ledger fresh after the sweep writes many rows at once.

Why: every delivery reads its customer's other messages for the frequency cap. With
statistics, PostgreSQL finds them through the customer index (a handful of rows, ~0.05 ms).
Without (a ledger just filled by its first sweep, or one that grew tenfold), it guesses, and
it guessed to intersect that index with the status index: every pending row's entry, read for
every delivery (1.3 ms of the server's CPU at 20,000 rows, growing with the ledger).
Autovacuum does gather them, but a minute or more later, while the sweep's messages are
already going out. So the sweep asks for them as soon as the ledger has changed a lot.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, text

log = logging.getLogger("milepost.ledger")

# Stale: more rows changed since the last ANALYZE than the table then held (and than
# MIN_CHANGED). Once there are statistics the planner scales them to the table's current
# size, so a growing ledger keeps its plan; what goes wrong is a ledger with none, or one
# that has changed out of all recognition. Doubling keeps a 1M-vehicle sweep to a dozen
# ANALYZEs, each a bounded sample of 30,000 rows; autovacuum keeps them fresh afterwards.
STALE_SHARE = 1.0
MIN_CHANGED = 1_000

# Never analyzed (reltuples -1, or 0 before PostgreSQL 14): known at once. Rows changed since:
# counted by the server a second or so after the writers commit, so a later range sees them.
_STALE = text(
    """
    SELECT c.reltuples <= 0
        OR s.n_mod_since_analyze > GREATEST(:min_changed, :share * c.reltuples)
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.relid = to_regclass('deliveries')
    """
)


def refresh(engine: Engine) -> bool:
    """ANALYZE the ledger on PostgreSQL if its statistics are stale; whether it did.

    Call it after writing ledger rows: on a ledger with nothing new it costs one query.
    """
    if engine.dialect.name != "postgresql":
        return False  # SQLite's planner picks the customer index without statistics
    with engine.connect() as conn:
        stale = conn.execute(_STALE, {"min_changed": MIN_CHANGED, "share": STALE_SHARE}).scalar()
        if not stale:
            return False
        # Two workers may both find them stale: the second ANALYZE waits for the first's lock
        # and samples again, a bounded cost. Neither blocks the ledger's readers or writers.
        conn.execute(text("ANALYZE deliveries"))
        conn.commit()
    log.info("ledger statistics refreshed after a large change")
    return True
