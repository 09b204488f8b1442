"""`milepost import`: the dealer's CSV exports in, a sentence and a table out, bad rows listed."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from crm.importer import ImportReport, import_dir
from worker.settings import get_settings

SHOWN_ERRORS = 50  # a bad export can have thousands; the first ones say what to fix


def import_and_report(directory: Path, out: Console, err: Console) -> bool:
    """Import ``directory``; True when every row of every file went in."""
    settings = get_settings()
    with err.status(f"Importing {directory}"):
        report = import_dir(
            directory, settings.database_url, tz=settings.timezone, region=settings.phone_region
        )
    _print(report, directory, out, err)
    return report.ok and bool(report.files)


def _print(report: ImportReport, directory: Path, out: Console, err: Console) -> None:
    for error in report.errors[:SHOWN_ERRORS]:
        err.print(f"[red]{error}[/red]", highlight=False, soft_wrap=True)
    if len(report.errors) > SHOWN_ERRORS:
        err.print(f"… and {len(report.errors) - SHOWN_ERRORS} more rejected rows.")
    table = Table("file", "inserted", "updated", "unchanged", "rejected", title="Import")
    for file in report.files:
        rejected = f"[red]{file.rejected}[/red]" if file.rejected else "0"
        if file.refused:
            rejected += " (whole file)"
        table.add_row(
            file.file, str(file.inserted), str(file.updated), str(file.unchanged), rejected
        )
    if not report.files:
        err.print(
            f"[red]{directory} holds none of the import files[/red] "
            f"({', '.join(report.missing)}); see docs/import.md."
        )
        return
    out.print(table)
    added = sum(f.inserted + f.updated for f in report.files)
    skipped = sum(f.rejected for f in report.files)
    out.print(
        f"Imported {len(report.files)} files from {directory}: {added} rows added or changed, "
        f"{skipped} rejected.",
        soft_wrap=True,
    )
    if report.ignored:
        out.print(f"Ignored (not an import file): {', '.join(report.ignored)}.")
