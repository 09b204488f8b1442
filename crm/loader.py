"""Read one CSV file of one entity: check the header, validate rows, resolve keys, merge."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from typing import Any, Protocol

from sqlalchemy import Connection, select

from crm.csvspec import Entity, Field, Ref
from crm.fields import BadValue, Context
from crm.merge import Counts, Merger
from crm.odometer import OdometerHistory

BATCH = 2000  # rows per lookup and merge; bounds memory and the size of IN (...) lists


class CsvReader(Protocol):
    """What FileLoader needs of a ``csv.reader``."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


class Rejected(Exception):
    """The whole file is refused (wrong header, not UTF-8); nothing of it is applied."""

    def __init__(self, line: int, message: str, rows: int = 0) -> None:
        super().__init__(message)
        self.line, self.message, self.rows = line, message, rows


class FileLoader:
    """Applies one file inside the caller's transaction; reports row errors through ``reject``."""

    def __init__(self, conn: Connection, entity: Entity, ctx: Context, now: datetime) -> None:
        self.conn, self.entity, self.ctx, self.now = conn, entity, ctx, now
        self.errors: list[tuple[int, str]] = []
        self.counts = Counts()
        self._ids: dict[tuple[str, str], dict[str, int | None]] = {}
        self._seen: dict[tuple[Any, ...], int] = {}
        # Service visits, and the odometer readings events add to the same table.
        odometer = entity.table.name == "service_visits"
        self._odometer = OdometerHistory(conn) if odometer else None

    def run(self, reader: CsvReader) -> None:
        """Load every row of ``reader``."""
        header = next(reader, None)
        if header is None:
            raise Rejected(1, f"the file is empty; expected a header: {self._columns()}")
        try:
            fields = self._header(header)
        except Rejected as exc:
            exc.rows = sum(1 for _ in self._records(reader))  # how much the refusal skips
            raise
        columns = [self._column(f) for f in fields]
        defaults = {f.name: f.default for f in self.entity.fields if f not in fields}
        merger = Merger(self.conn, self.entity, columns, defaults, self.now)
        records = self._records(reader)
        while chunk := list(islice(records, BATCH)):
            rows = self._validate(fields, chunk)
            counts = merger.apply(rows)
            self.counts.inserted += counts.inserted
            self.counts.updated += counts.updated
            self.counts.unchanged += counts.unchanged

    def _columns(self) -> str:
        return ", ".join(f.name for f in self.entity.fields)

    def _header(self, header: list[str]) -> list[Field]:
        names = [h.strip().lower() for h in header]
        known = {f.name: f for f in self.entity.fields}
        problems = []
        missing = [f.name for f in self.entity.fields if f.required and f.name not in names]
        if missing:
            problems.append(f"missing column{'s'[: len(missing) - 1]} {', '.join(missing)}")
        for position, name in enumerate(names, 1):
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                what = f"'{name}'" if name else f"number {position} (no name)"
                problems.append(f"unknown column {what}{hint}")
            elif names.index(name) != position - 1:
                problems.append(f"column '{name}' appears twice")
        if problems:
            raise Rejected(
                1, f"wrong header: {'; '.join(problems)}. The columns are: {self._columns()}"
            )
        return [known[name] for name in names]

    def _column(self, field: Field) -> str:
        ref = self._ref(field)
        return ref.column if ref else field.name

    def _ref(self, field: Field) -> Ref | None:
        return next((r for r in self.entity.refs if r.field == field.name), None)

    def _records(self, reader: CsvReader) -> Iterator[tuple[int, list[str]]]:
        line = reader.line_num
        for cells in reader:
            start, line = (
                line + 1,
                reader.line_num,
            )  # a quoted cell may span lines: report the first
            if any(cell.strip() for cell in cells):
                yield start, cells

    def _validate(
        self, fields: list[Field], chunk: list[tuple[int, list[str]]]
    ) -> list[dict[str, Any]]:
        parsed = [(line, self._parse(line, fields, cells)) for line, cells in chunk]
        for ref in self.entity.refs:
            self._load_ids(ref, {v[ref.field] for _, v in parsed if v is not None})
        if self._odometer is not None:
            ids = self._ids[("vehicles", "vin")]
            self._odometer.load(i for _, v in parsed if v and (i := ids.get(v["vin"])))
        good = []
        for line, values in parsed:
            if values is not None and (row := self._accept(line, fields, values)) is not None:
                good.append(row)
        return good

    def _parse(self, line: int, fields: list[Field], cells: list[str]) -> dict[str, Any] | None:
        if len(cells) != len(fields):
            return self._reject(line, f"has {len(cells)} values, the header {len(fields)} columns")
        values: dict[str, Any] = {}
        problems = []
        for field, cell in zip(fields, cells, strict=True):
            cell = cell.strip()
            if not cell:
                if field.required:
                    problems.append(f"{field.title} is empty")
                values[field.name] = field.default
                continue
            try:
                values[field.name] = field.parse(cell, self.ctx)
            except BadValue as exc:
                problems.append(f"{field.title} {cell!r} {exc}")
        problems += [p for check in self.entity.checks if (p := check(values))]
        return self._reject(line, "; ".join(problems)) if problems else values

    def _reject(self, line: int, message: str) -> dict[str, Any] | None:
        """Record the row's problem; None, so a parser can ``return self._reject(…)``."""
        self.errors.append((line, message))
        return None

    def _load_ids(self, ref: Ref, keys: set[str]) -> None:
        ids = self._ids.setdefault((ref.table.name, ref.key), {})
        missing = [k for k in keys if k not in ids]
        if not missing:
            return
        ids.update(dict.fromkeys(missing))
        key = ref.table.c[ref.key]
        query = select(key, ref.table.c.id).where(key.in_(missing))
        ids.update((key, id_) for key, id_ in self.conn.execute(query))

    def _accept(self, line: int, fields: list[Field], values: dict[str, Any]) -> dict | None:
        row: dict[str, Any] = {}
        for field in fields:
            ref = self._ref(field)
            if ref is None:
                row[field.name] = values[field.name]
                continue
            found = self._ids[(ref.table.name, ref.key)][values[field.name]]
            if found is None:
                return self._reject(
                    line,
                    f"unknown {ref.label} {values[field.name]!r}"
                    f" (not in the database, nor imported from {ref.source})",
                )
            row[ref.column] = found
        key = tuple(row[c] for c in self.entity.key)
        if (first := self._seen.get(key)) is not None:
            named = [f for f in fields if self._column(f) in self.entity.key]
            what = " and ".join(f"{f.title} {values[f.name]!r}" for f in named)
            return self._reject(line, f"{what} already appears on line {first}")
        if self._odometer is not None:
            reading = (row["vehicle_id"], row["order_no"], row["day"], row["odometer_km"])
            if problem := self._odometer.conflict(*reading):
                return self._reject(line, problem)
            self._odometer.accept(*reading, row["kind"])
        self._seen[key] = line
        return row
