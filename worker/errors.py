"""Turn any error a command meets into one clear sentence on stderr instead of a traceback.

Exit codes: 2 when Milepost cannot run as configured (a setting, the database, the broker, a
file: the sentence names it and says what to fix), 1 for anything unexpected, 130 on Ctrl-C.
MILEPOST_DEBUG=1 prints the traceback after the sentence.
"""

from __future__ import annotations

import functools
import os
import re
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError
from typer.exceptions import TyperException

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True)

CONFIG, UNEXPECTED, INTERRUPTED = 2, 1, 130
DATABASE_URLS = "sqlite:///milepost.db or postgresql+psycopg://…"
_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s/:@]*:)[^\s/@]+@")


def mask(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ***."""
    return _PASSWORD.sub(r"\1***@", text)


def debugging() -> bool:
    """True when MILEPOST_DEBUG asks for tracebacks (read here: the settings may be broken)."""
    return os.environ.get("MILEPOST_DEBUG", "").lower() not in ("", "0", "false", "no")


def _setting(name: str) -> str:
    """``MILEPOST_<NAME> '<value>'`` for a sentence, its password masked."""
    from worker.settings import get_settings

    variable = f"MILEPOST_{name.upper()}"
    try:
        value = getattr(get_settings(), name, None)
    except Exception:  # the settings themselves are broken: the sentence goes without the value
        return variable
    return f"{variable} {mask(repr(value))}" if value else variable


def _raised_in(exc: BaseException, *modules: str) -> bool:
    return any(
        str(frame.f_globals.get("__name__", "")).startswith(modules)
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def _broker_errors() -> tuple[type[BaseException], ...]:
    """The ways a broker client says it cannot reach its server (clients imported on use)."""
    from dramatiq.errors import BrokerConnectionError
    from pika.exceptions import AMQPConnectionError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return BrokerConnectionError, AMQPConnectionError, RedisConnectionError, RedisTimeoutError


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(exc).__name__


def sentence(exc: Exception) -> tuple[str, int]:
    """What to tell the user about ``exc``, and the exit code."""
    from worker.runtime import CampaignsInvalid
    from worker.settings import SettingsError

    if isinstance(exc, SettingsError) or (
        isinstance(exc, ValueError) and str(exc).startswith("MILEPOST_")
    ):
        return f"Configuration error: {_first_line(exc)}.", CONFIG
    if isinstance(exc, CampaignsInvalid):
        return str(exc), CONFIG
    database = _setting("database_url")
    if isinstance(exc, ArgumentError) and _raised_in(exc, "sqlalchemy.engine"):
        return (
            f"{database} is not a database URL Milepost can use ({_first_line(exc)}); "
            f"set it to {DATABASE_URLS}."
        ), CONFIG
    if isinstance(exc, ImportError) and _raised_in(exc, "sqlalchemy.engine"):
        return (
            f"{database} needs the database driver {exc.name!r}, which is not installed; "
            f"install it or set the URL to {DATABASE_URLS}."
        ), CONFIG
    if isinstance(exc, OperationalError | ProgrammingError):
        reason = _first_line(exc.orig) if exc.orig else _first_line(exc)
        missing = "no such table" in reason or "does not exist" in reason
        if missing and not reason.startswith("connection"):  # not: database "x" does not exist
            return (
                f"The database has no Milepost schema ({reason}); run `milepost db upgrade`.",
                CONFIG,
            )
        return f"Cannot use the database ({reason}); check {database}.", CONFIG
    if isinstance(exc, _broker_errors()):
        variables = _setting("broker_url")
        if os.environ.get("MILEPOST_REDIS_URL"):  # rate limits may use a Redis of their own
            variables += f" or {_setting('redis_url')}"
        return f"Cannot reach the broker ({_first_line(exc)}); check {variables}.", CONFIG
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"Cannot use {exc.filename}: {exc.strerror or _first_line(exc)}.", CONFIG
    return (
        f"Unexpected error: {type(exc).__name__}: {_first_line(exc)}. "
        "Run again with MILEPOST_DEBUG=1 to see the traceback."
    ), UNEXPECTED


def friendly(command: F) -> F:
    """Print any error as one sentence and exit non-zero; MILEPOST_DEBUG=1 adds the traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, TyperException):
            raise  # exits, and usage errors (BadParameter, …) Typer reports itself
        except KeyboardInterrupt:
            raise typer.Exit(INTERRUPTED) from None
        except Exception as exc:
            text, code = sentence(exc)
            err.print(mask(text), style="red", markup=False, highlight=False, soft_wrap=True)
            if debugging():
                raise
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]
