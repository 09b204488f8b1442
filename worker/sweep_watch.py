"""Follow a sweep run the workers are doing: poll its record, show a bar, say when nothing moves.

Only the database is read, so this works from any machine, for a run queued by anyone (the
scheduler's daily sweep included).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from worker.sweep_runs import RunState, get

POLL_S = 0.5
STALL_S = 60.0  # a range takes about a second: a minute without one means something is wrong
GIVE_UP_S = 600.0


class NoSuchRun(LookupError):
    """The run id is not in the database."""


class Stalled(Exception):
    """The run made no progress for GIVE_UP_S; the sentence says what to check."""


@dataclass
class Limits:
    poll_s: float = POLL_S
    stall_s: float = STALL_S
    give_up_s: float = GIVE_UP_S


def progress_bar(console: Console) -> Progress:
    """The sweep's bar, here or in the workers: ranges done of the total, and the time so far."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ranges"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def follow(engine: Engine, run_id: int, console: Console, limits: Limits | None = None) -> RunState:
    """Wait until the run is finished, with a progress bar of its ranges; its final state."""
    limits = limits or Limits()
    state = _get(engine, run_id)
    seen, moved, warned = (state.ranges, state.done), time.monotonic(), False
    with progress_bar(console) as bar:
        task = bar.add_task("Waiting for a worker to take the sweep", total=None)
        while True:
            if state.ranges is not None:
                bar.update(task, description="Evaluating", total=state.ranges, completed=state.done)
            if state.finished_at is not None:
                return state
            if (state.ranges, state.done) != seen:
                seen, moved, warned = (state.ranges, state.done), time.monotonic(), False
            idle = time.monotonic() - moved
            if idle >= limits.give_up_s:
                raise Stalled(stalled(state, idle))
            if idle >= limits.stall_s and not warned:
                bar.console.print(f"[yellow]{stalled(state, idle)}[/yellow]")
                warned = True
            time.sleep(limits.poll_s)
            state = _get(engine, run_id)


def stalled(state: RunState, idle: float) -> str:
    """What a run that does not move may be waiting for, in one sentence."""
    if state.ranges is None:
        return f"No worker has taken sweep {state.id} yet; is `milepost worker` running?"
    return (
        f"Sweep {state.id} has finished no range for {idle:.0f} s ({state.done} of "
        f"{state.ranges} done); is `milepost worker` running?"
    )


def _get(engine: Engine, run_id: int) -> RunState:
    state = get(engine, run_id)
    if state is None:
        raise NoSuchRun(f"There is no sweep {run_id}; a run's id is printed when it is queued.")
    return state
