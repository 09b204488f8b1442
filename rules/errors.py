"""The campaign language's one error: what is wrong, where (file:line), and what to do about it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class CampaignError(Exception):
    """A campaign file that does not validate; str() is ``path:line: message — hint``.

    ``line`` 0 means the whole file (it cannot be read, say), and str() leaves it out.
    """

    def __init__(self, path: Path | str, line: int, message: str, hint: str = "") -> None:
        self.path, self.line, self.message, self.hint = Path(path), line, message, hint
        text = f"{path}:{line}: {message}" if line else f"{path}: {message}"
        super().__init__(f"{text} — {hint}" if hint else text)


class CompileError(ValueError):
    """A condition that durable_rules cannot take (too complex); the loader adds file and line."""


def did_you_mean(word: str, choices: Iterable[str], *, listing: str = "") -> str:
    """A hint: the choice closest to ``word``, or else ``listing`` (default: every choice)."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close and "." in word:  # a typo in the scope (vehicel.age_days) still finds its fact
        tail = word.split(".", 1)[1]
        close = [c for c in choices if c.split(".", 1)[-1] == tail][:1]
    if close:
        return f"did you mean {close[0]!r}?"
    return listing or "expected one of: " + ", ".join(choices)


class Problems:
    """Collects every error in one file, so a marketer fixes them all in one pass."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[CampaignError] = []

    def add(self, line: int, message: str, hint: str) -> None:
        """Record one error at ``line`` of this file."""
        self.errors.append(CampaignError(self.path, line, message, hint))

    def __bool__(self) -> bool:
        return bool(self.errors)
