"""`milepost deliveries`: what happened to messages, and the deliberate release of unknown ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from crm.models import Delivery, table
from worker.errors import friendly

D = table(Delivery)
out = Console()


@friendly
def deliveries(
    status: Annotated[
        str | None, typer.Option(help="Only rows in this status, e.g. unknown")
    ] = None,
    release: Annotated[
        list[int] | None, typer.Option(help="Send these `unknown` rows again (repeatable)")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows to list")] = 50,
) -> None:
    """Count deliveries by status, list them, or release `unknown` ones after checking."""
    from worker import ledger
    from worker.runtime import get_runtime

    rt = get_runtime()
    if release:
        with rt.engine.begin() as conn:
            count = ledger.release_unknown(conn, release, datetime.now(UTC))
        out.print(f"Released {count} of {len(release)} deliveries; the next tick sends them.")
        if count < len(release):
            out.print(
                "Only rows in status `unknown` can be released; "
                "`milepost deliveries --status unknown` lists them."
            )
            raise typer.Exit(1)
        return
    with rt.engine.connect() as conn:
        counts = conn.execute(select(D.c.status, func.count()).group_by(D.c.status)).all()
        query = select(D.c.id, D.c.campaign, D.c.channel, D.c.status, D.c.reason, D.c.updated_at)
        if status:
            query = query.where(D.c.status == status)
        rows = conn.execute(query.order_by(D.c.updated_at.desc()).limit(limit)).all()
    out.print("Deliveries by status: " + ", ".join(f"{s} {n}" for s, n in sorted(counts)))
    table = Table("id", "campaign", "channel", "status", "reason", "updated")
    for r in rows:
        table.add_row(
            str(r.id),
            r.campaign,
            r.channel,
            r.status,
            r.reason or "",
            f"{r.updated_at:%Y-%m-%d %H:%M}",
        )
    out.print(table)
