"""Turn the errors a user can cause or fix into one clear sentence instead of a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import OperationalError, ProgrammingError

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True)


def _sentence(exc: BaseException) -> str | None:
    from worker.runtime import CampaignsInvalid
    from worker.settings import SettingsError

    if isinstance(exc, SettingsError):
        return f"Configuration error: {exc}"
    if isinstance(exc, CampaignsInvalid):
        return str(exc)
    if isinstance(exc, OperationalError | ProgrammingError):
        reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
        if "no such table" in reason or "does not exist" in reason:
            return f"The database has no Milepost schema ({reason}); run `milepost db upgrade`."
        return f"Cannot use the database ({reason}); check MILEPOST_DATABASE_URL."
    if isinstance(exc, FileNotFoundError):
        return f"File not found: {exc.filename}"
    return None


def friendly(command: F) -> F:
    """Print known errors as one sentence and exit 2; let bugs show their traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:
            sentence = _sentence(exc)
            if sentence is None:
                raise
            err.print(f"[red]{sentence}[/red]")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
