"""`milepost import`: the dealer's CSV exports in, a sentence and a table out, bad rows listed."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crm.csvspec import ENTITIES
from crm.importer import ImportReport, import_dir
from worker.settings import get_settings

SHOWN_ERRORS = 50  # a bad export can have thousands; the first ones say what to fix


def import_and_report(directory: Path, out: Console, err: Console) -> bool:
    """Import ``directory``; True when every row of every file went in."""
    settings = get_settings()
    sizes = {e.filename: _size(directory / e.filename) for e in ENTITIES}
    done = dict.fromkeys(sizes, 0)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),  # the bytes of the files read so far, of all of them
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with bar:
        task = bar.add_task(f"Importing {directory}", total=sum(sizes.values()) or None)

        def advance(name: str, read: int) -> None:
            done[name] = read
            bar.update(task, completed=sum(done.values()), description=f"Importing {name}")

        report = import_dir(
            directory,
            settings.database_url,
            tz=settings.timezone,
            region=settings.phone_region,
            progress=advance,
        )
    _print(report, directory, out, err)
    return report.ok and bool(report.files)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # missing, or not readable: the import says which
        return 0


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
