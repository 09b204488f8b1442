"""The `milepost` command: one sentence of what happened, a table, non-zero exit on failure."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from worker.errors import friendly

if TYPE_CHECKING:
    from worker.sweep_runs import RunState as SweepRunState

app = typer.Typer(
    help="Milepost: customer-care automation for car dealerships.", no_args_is_help=True
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
campaigns_app = typer.Typer(help="Check and test campaign files.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(campaigns_app, name="campaigns")
out = Console()
err = Console(stderr=True)

DateOpt = Annotated[
    datetime | None, typer.Option("--date", formats=["%Y-%m-%d"], help="Evaluate as of this day")
]


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


@db_app.command("upgrade")
@friendly
def db_upgrade() -> None:
    """Create or migrate the database schema to the latest version."""
    from crm.migrate import upgrade
    from worker.settings import get_settings

    upgrade(get_settings().database_url)
    out.print("The database schema is up to date.")


@app.command("import")
@friendly
def import_(
    directory: Annotated[Path, typer.Argument(help="Folder with the dealer's CSV exports")],
) -> None:
    """Import dealer data (customers.csv, vehicles.csv, …); bad rows are reported and skipped."""
    from worker.importing import import_and_report

    if not import_and_report(directory, out, err):
        raise typer.Exit(1)


@app.command()
@friendly
def ingest(
    path: Annotated[Path, typer.Argument(help='JSON lines: {"event": …, "data": {…}}')],
) -> None:
    """Apply events (vehicle delivered, visit closed, …) and evaluate their customers at once."""
    from worker.ingest import ingest_file

    if not ingest_file(path, out, err):
        raise typer.Exit(1)


@app.command()
@friendly
def sweep(
    day: DateOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="With workers: show their progress and the result")
    ] = False,
    watch: Annotated[
        int | None,
        typer.Option("--watch", metavar="RUN", help="Follow sweep RUN, queued earlier by anyone"),
    ] = None,
) -> None:
    """Evaluate every campaign for every vehicle, then deliver what is due."""
    from worker.runtime import get_runtime

    if watch is not None:
        if day is not None:
            raise typer.BadParameter("--watch follows a sweep already queued; drop --date.")
        _follow(watch, f"Following sweep {watch}")
        return
    if get_runtime().settings.broker_url:
        from worker import run

        run_id = run.sweep_queued(run.as_of_for(_day(day)))
        if not wait:
            out.print(
                f"Sweep {run_id} queued; the workers are evaluating it. "
                f"Follow it with `milepost sweep --watch {run_id}`."
            )
            return
        _follow(run_id, f"Sweep {run_id} queued")
        return
    _sweep_here(_day(day))  # waits anyway: the evaluating happens here


def _sweep_here(day: date | None) -> None:
    from worker import run, sweep_runs, sweep_watch
    from worker.runtime import get_runtime

    with sweep_watch.progress_bar(err) as bar:
        task = bar.add_task("Evaluating", total=None)
        run_id = run.sweep_inprocess(
            run.as_of_for(day),
            on_start=lambda n: bar.update(task, total=n),
            advance=lambda: bar.advance(task),
        )
    state = sweep_runs.get(get_runtime().engine, run_id)
    assert state is not None  # written by this process a moment ago
    _report(state)


def _follow(run_id: int, intro: str) -> None:
    """Wait for a run the workers are doing, then report it; Ctrl-C leaves it running."""
    from worker import sweep_watch
    from worker.runtime import get_runtime

    again = f"`milepost sweep --watch {run_id}` follows it again."
    try:
        out.print(f"{intro}; Ctrl-C stops waiting for it, not the sweep.")
        state = sweep_watch.follow(get_runtime().engine, run_id, err)
    except sweep_watch.NoSuchRun as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except sweep_watch.Stalled as exc:
        err.print(f"[red]{exc} Stopped waiting; the sweep stays queued and {again}[/red]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print(f"Stopped waiting; sweep {run_id} goes on in the workers and {again}")
        raise typer.Exit(130) from None
    _report(state)
    out.print("Outcomes so far: the workers go on delivering; `milepost deliveries` shows them.")


def _report(state: SweepRunState) -> None:
    """The sentence and per-campaign table for a finished sweep, wherever it ran."""
    from worker import summary
    from worker.runtime import get_runtime

    rt = get_runtime()
    assert state.finished_at is not None
    # Its rows were created between its start and its end (or its as-of time, if later), by
    # the clocks of the machines involved: NTP keeps them close enough for a table.
    until = max(state.finished_at, state.as_of)
    with rt.engine.connect() as conn:
        rows = summary.since(conn, state.started_at, until)
    table = Table("campaign", "matched", "messages", "calls", "outcomes", title="Sweep")
    for row in rows:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(row.by_status.items()))
        table.add_row(row.campaign, str(row.matched), str(row.messages), str(row.calls), outcomes)
    total = sum(r.matched for r in rows)
    local = state.as_of.astimezone(rt.settings.tz)
    took = (state.finished_at - state.started_at).total_seconds()
    ranges = f"{state.ranges} range" + ("" if state.ranges == 1 else "s")
    out.print(
        f"Swept as of {local:%Y-%m-%d %H:%M %Z} (sweep {state.id}, {ranges} in {took:.1f} s): "
        f"{total} new matches in {len(rows)} campaigns."
    )
    if rows:
        out.print(table)


@app.command()
@friendly
def calls(
    day: DateOpt = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write the list here")] = None,
) -> None:
    """Show the call-center's list of open calls for a day (default today)."""
    from worker.calls import call_list, write_csv
    from worker.runtime import get_runtime

    rt = get_runtime()
    today = _day(day) or datetime.now(UTC).astimezone(rt.settings.tz).date()
    with rt.engine.connect() as conn:
        rows = call_list(conn, today, rt.settings.tz)
    table = Table("id", "pri", "due by", "customer", "phone", "campaign", "vehicle")
    for r in rows[:50]:
        due = f"[red]{r['due_by']}[/red]" if r["overdue"] else r["due_by"]
        table.add_row(
            str(r["id"]),
            str(r["priority"]),
            due,
            r["customer"],
            r["phone"] or "",
            r["campaign"],
            r["vehicle"] or "",
        )
    out.print(
        f"{len(rows)} open calls for {today}" + (" (first 50 shown)" if len(rows) > 50 else "")
    )
    if rows:
        out.print(table)
    if csv:
        write_csv(rows, csv)
        out.print(f"Call list written to {csv}")


@campaigns_app.command("check")
@friendly
def campaigns_check(
    directory: Annotated[Path | None, typer.Argument(help="Campaign folder")] = None,
) -> None:
    """Validate campaign files and their templates; exit 1 on any error."""
    from worker.campaign_commands import check

    if not check(directory, out, err):
        raise typer.Exit(1)


@campaigns_app.command("test")
@friendly
def campaigns_test(
    directory: Annotated[Path | None, typer.Argument(help="Campaign folder")] = None,
) -> None:
    """Run every campaign's `examples:` through the rules engine; exit 1 on a failure."""
    from worker.campaign_commands import run_examples

    if not run_examples(directory, out, err):
        raise typer.Exit(1)


@app.command()
@friendly
def facts() -> None:
    """List every fact a campaign condition or template can use."""
    from rules.catalog import CATALOG

    table = Table("fact", "type", "meaning", title="Facts catalog")
    for fact in CATALOG.values():
        kind = f"{fact.type}: {', '.join(fact.values)}" if fact.values else fact.type
        meaning = f"{fact.meaning} (absent when unknown)" if fact.optional else fact.meaning
        table.add_row(fact.name, "text (templates only)" if fact.type == "text" else kind, meaning)
    out.print(table)


@app.command()
@friendly
def demo(
    customers: Annotated[int, typer.Option(help="How many customers to generate")] = 2500,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same dealer")] = 7,
    output: Annotated[Path, typer.Option(help="Folder for the demo database and CSV")] = Path(
        "demo-output"
    ),
) -> None:
    """Build a demo dealership, run today's sweep, and write the call list."""
    from worker.demo import prepare

    url = prepare(output, customers, seed, out)
    os.environ["MILEPOST_DATABASE_URL"] = url
    from worker.runtime import reset_runtime

    reset_runtime()
    _sweep_here(None)
    from worker.calls import call_list, write_csv
    from worker.runtime import get_runtime

    rt = get_runtime()
    today = datetime.now(UTC).astimezone(rt.settings.tz).date()
    with rt.engine.connect() as conn:
        rows = call_list(conn, today, rt.settings.tz)
    target = output / "calls.csv"
    write_csv(rows, target)
    out.print(
        f"{len(rows)} open calls on today's list, written to {target}. Look around with "
        f"MILEPOST_DATABASE_URL={url} milepost calls (or deliveries).",
        soft_wrap=True,
    )


def main() -> Any:
    return app()


def _register() -> None:
    from worker import daemons, deliveries

    app.command()(daemons.worker)
    app.command()(daemons.scheduler)
    app.command()(daemons.api)
    app.command()(daemons.health)
    app.command()(deliveries.deliveries)


_register()


if __name__ == "__main__":
    main()
