"""`milepost demo`: a fresh demo dealership, so a newcomer sees Milepost work in one command."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from worker.settings import get_settings


def prepare(output: Path, customers: int, seed: int, console: Console) -> str:
    """Create ``output/demo.db`` anew with a generated dealership; returns its URL."""
    from crm.demo import generate
    from crm.migrate import upgrade

    output.mkdir(parents=True, exist_ok=True)
    for old in output.glob("demo.db*"):
        old.unlink()
    url = f"sqlite:///{output / 'demo.db'}"
    upgrade(url)
    today = datetime.now(UTC).astimezone(get_settings().tz).date()
    started = time.perf_counter()
    with console.status("Generating the demo dealership"):
        stats = generate(url, customers=customers, seed=seed, today=today)
    console.print(
        f"Demo dealership (seed {seed}) in {output / 'demo.db'}: {stats}"
        f" — built in {time.perf_counter() - started:.1f} s."
    )
    return url
