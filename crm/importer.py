"""Import the dealer's CSV exports: one file per entity, validated row by row, idempotent.

Files are applied in a fixed order (customers before what refers to them), each in one
transaction: a file is applied whole minus its bad rows, or — wrong header, not UTF-8 — not
at all. Rows are upserted on their natural keys, so importing the same files again changes
nothing. The columns are documented in docs/import.md.
"""

from __future__ import annotations

import csv
import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from sqlalchemy import Engine

from crm.csvspec import BY_NAME, ENTITIES, Entity
from crm.db import get_engine
from crm.fields import Context
from crm.loader import FileLoader, Rejected


@dataclass(frozen=True)
class RowError:
    """A rejected row (or a whole file, on line 1) and why."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class FileReport:
    """What importing one file did."""

    file: str
    entity: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0  # rows skipped: the bad ones, or all of a refused file
    errors: list[RowError] = field(default_factory=list)
    refused: bool = False  # nothing of the file was applied (wrong header, not UTF-8)


@dataclass
class ImportReport:
    """What importing a folder did, file by file in import order."""

    files: list[FileReport] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # entity files the folder lacks
    ignored: list[str] = field(default_factory=list)  # CSV files that are no entity's

    @property
    def errors(self) -> list[RowError]:
        return [error for report in self.files for error in report.errors]

    @property
    def ok(self) -> bool:
        """True when every row of every file went in."""
        return not self.errors

    def __getitem__(self, entity: str) -> FileReport:
        return next(report for report in self.files if report.entity == entity)


Progress = Callable[[str, int], None]  # (file name, bytes of it read so far)


def _unwatched(name: str, done: int) -> None:
    """No progress to show."""


def import_dir(
    directory: Path,
    url: str | None = None,
    *,
    tz: str,
    region: str = "CN",
    progress: Progress = _unwatched,
) -> ImportReport:
    """Import every known ``<entity>.csv`` in ``directory``, in dependency order."""
    if directory.is_file():
        expected = "it is a file; expected a folder of CSV files (customers.csv, vehicles.csv, …)"
        raise NotADirectoryError(errno.ENOTDIR, expected, str(directory))
    if not directory.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(directory))
    ctx, engine = context(tz, region), get_engine(url)
    report = ImportReport()
    names = {entity.filename for entity in ENTITIES}
    report.ignored = sorted(p.name for p in directory.glob("*.csv") if p.name not in names)
    for entity in ENTITIES:
        path = directory / entity.filename
        if path.is_file():
            report.files.append(_import(engine, path, entity, ctx, progress))
        else:
            report.missing.append(entity.filename)
    return report


def import_file(
    path: Path, entity: str, url: str | None = None, *, tz: str, region: str = "CN"
) -> FileReport:
    """Import one file holding ``entity`` rows ("customers", "vehicles", …)."""
    if entity not in BY_NAME:
        raise ValueError(f"unknown entity {entity!r}; one of {', '.join(BY_NAME)}")
    return _import(get_engine(url), path, BY_NAME[entity], context(tz, region))


def context(tz: str, region: str) -> Context:
    """How cells are read: the dealer's zone and the default phone region; ValueError if bad."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}; use an IANA name like Asia/Shanghai") from None
    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r}; use a country code like CN")
    return Context(zone, region.upper())


def _import(
    engine: Engine, path: Path, entity: Entity, ctx: Context, progress: Progress = _unwatched
) -> FileReport:
    report = FileReport(path.name, entity.name)
    try:
        # newline="" lets csv handle line breaks inside quoted cells; utf-8-sig drops a BOM.
        with engine.begin() as conn, path.open(encoding="utf-8-sig", newline="") as handle:
            loader = FileLoader(conn, entity, ctx, datetime.now(UTC))
            loader.run(csv.reader(_watched(handle, path.name, progress)))
    except Rejected as exc:
        return _refused(report, exc.line, exc.message, exc.rows)
    except UnicodeDecodeError:
        message = "not UTF-8 text (a GBK export?); save it as UTF-8 (in Excel: CSV UTF-8)"
        return _refused(report, 1, message)
    except csv.Error as exc:
        return _refused(report, 1, f"not a readable CSV file ({exc})")
    report.inserted = loader.counts.inserted
    report.updated = loader.counts.updated
    report.unchanged = loader.counts.unchanged
    report.rejected = len(loader.errors)
    report.errors = [RowError(path.name, line, message) for line, message in loader.errors]
    return report


def _watched(handle: TextIO, name: str, progress: Progress) -> Iterator[str]:
    """The lines of ``handle``, saying every few thousand how many bytes have been read."""
    for count, line in enumerate(handle, 1):
        if count % 2000 == 0:
            progress(name, handle.buffer.tell())
        yield line
    progress(name, handle.buffer.tell())


def _refused(report: FileReport, line: int, message: str, rows: int = 0) -> FileReport:
    report.refused, report.rejected = True, rows
    report.errors.append(RowError(report.file, line, message))
    return report
