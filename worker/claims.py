"""The ledger statements one delivery runs: read, claim (or settle), record. Built once.

One read returns the row with everything the send-time policies need (address, time zone,
consent, the messages competing for the frequency cap); a message that goes out then costs
two writes, its claim and its outcome. The statements run through worker.prepared: compiled
once per database, executed on the pooled DBAPI connection (see there why).

Claim, then act: the claim is an UPDATE conditional on the row being exactly as it was read
(status and updated_at), so of any number of jobs that read the same row one wins; the others
change nothing and stop. (Why not UPDATE … RETURNING with the customer's columns: SQLAlchemy
renders RETURNING unqualified on SQLite, and a correlated subquery there reads its own table.)
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Dialect

from crm.models import Consent, Customer, Delivery, table
from worker.policies import ADDRESS, SENT, WAITING, CapScope
from worker.prepared import Prepared

D, C, CS = table(Delivery), table(Customer), table(Consent)
CLAIMABLE = ("pending", "retry", "deferred")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")  # campaign ids and channels: safe as SQL literals


def _among(column: Any, values: tuple[str, ...]) -> Any:
    # Literals, not an IN list of parameters: the statement compiles once, with no
    # per-execution rendering. The values are validated identifiers, never customer data.
    if not values:
        return false()
    unsafe = [v for v in values if not _NAME.fullmatch(v)]
    if unsafe:
        raise ValueError(f"not an identifier, cannot go into SQL as a literal: {unsafe}")
    return column.in_([literal_column(f"'{v}'") for v in values])


def _competing(channel: str, counted: tuple[str, ...], marketing: tuple[str, ...]) -> Any:
    """Marketing messages counted with ``channel`` sent within its period, plus those due now
    that outrank the row read. Ranking the competitors (priority, then the ledger key) instead
    of first come makes the outcome the same whatever order the workers take the rows in, and
    whatever order a sweep inserted them in."""
    other = D.alias(f"other_{channel}")
    return (
        select(func.count())
        .where(
            other.c.customer_id == D.c.customer_id,
            other.c.id != D.c.id,
            _among(other.c.channel, counted),
            _among(other.c.campaign, marketing),
            or_(
                and_(
                    _among(other.c.status, SENT),
                    other.c.sent_at > bindparam(f"{channel}_since", type_=D.c.sent_at.type),
                ),
                and_(
                    _among(other.c.status, WAITING),
                    other.c.due_at <= bindparam("now", type_=D.c.due_at.type),
                    or_(
                        other.c.priority > D.c.priority,
                        and_(other.c.priority == D.c.priority, _key(other) < _key(D)),
                    ),
                    # A competitor that will never go takes no place: no address for it...
                    _addressed(other.c.channel, counted),
                    # ... or its customer opted out of it.
                    ~exists().where(
                        CS.c.customer_id == other.c.customer_id,
                        CS.c.channel == other.c.channel,
                        CS.c.allowed.is_(False),
                    ),
                ),
            ),
        )
        .scalar_subquery()
    )


def _key(rows: Any) -> Any:
    """The ledger key as one comparable value: a tie-break no insert order changes."""
    return tuple_(rows.c.campaign, rows.c.subject_id, rows.c.step, rows.c.occurrence)


def _addressed(channel: Any, channels: tuple[str, ...]) -> Any:
    """The customer (C, the row's own) has an address for ``channel``: import validated every
    one it stored, so a present one is usable (worker.policies.valid_address)."""
    return or_(*(and_(_among(channel, (name,)), C.c[ADDRESS[name]] != "") for name in channels))


def _read_statement(scope: CapScope) -> Prepared:
    consent = select(CS.c.allowed).where(
        CS.c.customer_id == D.c.customer_id, CS.c.channel == D.c.channel
    )
    counts = [
        (
            D.c.channel == literal_column(f"'{channel}'"),
            _competing(channel, counted, scope.marketing),
        )
        for channel, counted in scope.counted
    ]
    return Prepared(
        select(
            *D.c,
            C.c.phone,
            C.c.email,
            C.c.timezone,
            consent.scalar_subquery().label("consent"),
            case(*counts, else_=0).label("competing"),
        )
        .join_from(D, C, C.c.id == D.c.customer_id)
        .where(D.c.id == bindparam("delivery_id"))
    )


_reads: dict[CapScope, Prepared] = {}
_reads_lock = threading.Lock()

_SETTLE = Prepared(
    update(D)
    .where(
        D.c.id == bindparam("delivery_id"),  # the row as it was read: nobody touched it since
        D.c.status == bindparam("was_status"),
        D.c.updated_at == bindparam("was_updated_at"),
    )
    .values(
        status=bindparam("status"),
        reason=bindparam("reason"),
        due_at=func.coalesce(bindparam("due_at", type_=D.c.due_at.type), D.c.due_at),
        updated_at=bindparam("now", type_=D.c.updated_at.type),
    )
)

# A status Twilio's callback already recorded: it can come before the worker's record (the
# SDK's answer is slower than the callback, or timed out). The record never undoes it.
_REPORTED = or_(
    _among(D.c.status, ("delivered", "undelivered")),
    and_(_among(D.c.status, ("sent", "failed")), D.c.provider_id.is_not(None)),
)


def _unless_reported(column: Any) -> Any:
    """The column as recorded, or as it is when the provider already reported the row."""
    return case((_REPORTED, column), else_=bindparam(column.name, type_=column.type))


# One statement for every outcome: a NULL leaves due_at, sent_at and provider_id as they were,
# and `tried` is 1 when the provider was asked. Segments, attempts and sent_at are recorded
# even over a status the provider reported.
RECORD = Prepared(
    update(D)
    .where(D.c.id == bindparam("delivery_id"))
    .values(
        status=_unless_reported(D.c.status),
        reason=_unless_reported(D.c.reason),
        error_code=_unless_reported(D.c.error_code),
        provider_id=func.coalesce(
            bindparam("provider_id", type_=D.c.provider_id.type), D.c.provider_id
        ),
        segments=bindparam("segments", type_=D.c.segments.type),
        attempts=D.c.attempts + bindparam("tried", type_=D.c.attempts.type),
        due_at=func.coalesce(bindparam("due_at", type_=D.c.due_at.type), D.c.due_at),
        sent_at=func.coalesce(bindparam("sent_at", type_=D.c.sent_at.type), D.c.sent_at),
        updated_at=bindparam("now", type_=D.c.updated_at.type),
    )
)


class DeliveryRows:
    """The statements above on one pooled DBAPI connection (see worker.deliver for how long).

    Every write commits at once: no transaction stays open while the provider is asked.
    """

    def __init__(self, dbapi: Any, dialect: Dialect) -> None:
        self.dbapi, self.dialect = dbapi, dialect

    def read(
        self, delivery_id: int, now: datetime, scope: CapScope, since: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The row if it is claimable and due, with its customer's columns; else None.

        ``scope`` and ``since`` (policies.cap_scope, cap_since) say what the cap counts.
        """
        statement = _reads.get(scope)
        if statement is None:
            with _reads_lock:
                statement = _reads.setdefault(scope, _read_statement(scope))
        values = {"delivery_id": delivery_id, "now": now, **since}
        try:
            found = statement.first(self.dbapi, self.dialect, values)
        finally:
            self.dbapi.rollback()  # end the read: no snapshot held while the provider works
        if found is None or found["status"] not in CLAIMABLE or found["due_at"] > now:
            return None
        return found

    def claim(self, row: dict[str, Any], now: datetime) -> bool:
        """Move the row read to `sending`; False if another job changed it first."""
        return self.settle(row, now, "sending")

    def settle(
        self,
        row: dict[str, Any],
        now: datetime,
        status: str,
        reason: str | None = None,
        due_at: datetime | None = None,
    ) -> bool:
        """Move the row read to ``status`` (sending, suppressed, deferred) if it is unchanged."""
        values = {
            "delivery_id": row["id"],
            "was_status": row["status"],
            "was_updated_at": row["updated_at"],
            "status": status,
            "reason": reason[:200] if reason else None,
            "due_at": due_at,
            "now": now,
        }
        return self._commit(_SETTLE, values) == 1

    def record(self, delivery_id: int, now: datetime, status: str, **outcome: Any) -> None:
        """The claimed row's outcome (see ``outcome``), committed."""
        self._commit(RECORD, recorded(delivery_id, now, status, **outcome))

    def _commit(self, statement: Prepared, values: dict[str, Any]) -> int:
        try:
            changed = statement.rowcount(self.dbapi, self.dialect, values)
            self.dbapi.commit()
        except BaseException:
            self.dbapi.rollback()
            raise
        return changed


def recorded(
    delivery_id: int,
    now: datetime,
    status: str,
    *,
    reason: str | None = None,
    error_code: str | None = None,
    provider_id: str | None = None,
    segments: int | None = None,
    tried: bool = False,
    due_at: datetime | None = None,
    sent_at: datetime | None = None,
) -> dict[str, Any]:
    """RECORD's values for an outcome; ``reason`` cut to the column's 200 characters."""
    return {
        "delivery_id": delivery_id,
        "now": now,
        "status": status,
        "reason": reason[:200] if reason else None,
        "error_code": error_code[:40] if error_code else None,
        "provider_id": provider_id,
        "segments": segments,
        "tried": int(tried),
        "due_at": due_at,
        "sent_at": sent_at,
    }
