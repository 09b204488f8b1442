"""Upsert on natural keys with counts: insert new rows, update changed ones, leave equal ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from crm.csvspec import Entity


@dataclass
class Counts:
    """What a merge did to the rows it was given."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


class Merger:
    """Merges batches of validated rows of one entity into its table.

    Only the columns the file has are compared and written (``columns``); a new row gets the
    defaults of the others. The entity's stamp column, when the file leaves it empty, is not
    compared and is set to ``now`` on rows that are new or changed.
    """

    def __init__(
        self,
        conn: Connection,
        entity: Entity,
        columns: list[str],
        defaults: dict[str, Any],
        now: datetime,
    ) -> None:
        self.conn, self.entity, self.now = conn, entity, now
        self.table = entity.table
        self.columns = columns
        self.defaults = defaults
        new: dict[str, Any] = {
            c: bindparam(f"new_{c}") for c in [*columns, *self._stamp_only(columns)]
        }
        self._update = update(self.table).where(self.table.c.id == bindparam("old_id")).values(new)

    def _stamp_only(self, columns: list[str]) -> list[str]:
        stamp = self.entity.stamp
        return [stamp] if stamp and stamp not in columns else []

    def apply(self, rows: list[dict[str, Any]]) -> Counts:
        """Merge ``rows`` (column -> value, natural key included); keys are unique in a batch."""
        counts = Counts()
        if not rows:
            return counts
        existing = self._existing(rows)
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        stamp = self.entity.stamp
        for row in rows:
            old = existing.get(self._key(row))
            compared = [c for c in self.columns if not (c == stamp and row.get(c) is None)]
            if old is None:
                new = {**self.defaults, **row}
                if stamp and new.get(stamp) is None:
                    new[stamp] = self.now
                inserts.append(new)
            elif any(old[c] != row[c] for c in compared):
                changed = {f"new_{c}": row[c] for c in self.columns}
                if stamp and row.get(stamp) is None:
                    changed[f"new_{stamp}"] = self.now
                updates.append({"old_id": old["id"], **changed})
            else:
                counts.unchanged += 1
        if inserts:
            self.conn.execute(insert(self.table), inserts)
        if updates:
            self.conn.execute(self._update, updates)
        counts.inserted, counts.updated = len(inserts), len(updates)
        return counts

    def _key(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[c] for c in self.entity.key)

    def _existing(self, rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
        # One query per batch on the key's first column; a composite key is matched in Python.
        table, key = self.table, self.entity.key
        wanted = {self._key(row) for row in rows}
        names = ["id", *dict.fromkeys([*key, *self.columns])]
        query = select(*(table.c[n] for n in names)).where(
            table.c[key[0]].in_({k[0] for k in wanted})
        )
        found = {}
        for record in self.conn.execute(query).mappings():
            k = tuple(record[c] for c in key)
            if k in wanted:
                found[k] = dict(record)
        return found
