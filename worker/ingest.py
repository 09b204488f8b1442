"""`milepost ingest FILE`: events as JSON lines, each applied and its customer evaluated at once."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from worker.events import EventError, apply, dispatch
from worker.runtime import get_runtime


def ingest_file(path: Path, out: Console, err: Console) -> bool:
    """Apply every line of ``path`` (`{"event": …, "data": {…}}`); True when all were accepted."""
    rt = get_runtime()
    accepted = rejected = due = 0
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("data"), dict):
                    raise EventError('expected {"event": "…", "data": {…}}')
                applied = apply(rt, str(record.get("event")), record["data"])
            except (EventError, json.JSONDecodeError) as exc:
                rejected += 1
                err.print(
                    f"[red]{path.name}:{number}: {exc}[/red]", highlight=False, soft_wrap=True
                )
                continue
            dispatch(rt, applied.due)
            accepted, due = accepted + 1, due + len(applied.due)
    out.print(f"{accepted} events applied, {rejected} rejected; {due} messages or calls were due.")
    return rejected == 0
