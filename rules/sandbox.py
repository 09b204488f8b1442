"""Jinja's immutable sandbox, plus limits on what a short template can blow up to.

The stock sandbox blocks attribute escapes and mutation but limits no CPU or memory:
``{{ "x" * 10**9 }}`` or ``{{ name.center(10**9) }}`` would build a gigabyte. Anything that
sizes a value from a number (repetition, powers, padding, format widths) is checked here.
CPU is still unbounded (nested loops over ``range``): templates come from staff, and the
output cap stops a loop that writes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from string import Formatter
from typing import Any

from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_SIZE = 10_000  # the largest repetition, width or padding a template may ask for
MAX_EXPONENT = 64
_PADDING = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_PERCENT_SPEC = re.compile(r"%[-+# 0]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_format(fmt: str) -> None:
    """Refuse a %- or {}-format string whose widths are huge or taken from arguments."""
    for match in _PERCENT_SPEC.finditer(fmt):
        _check_widths(match.groups())
    if "{" in fmt:
        try:
            specs = [spec for _, _, spec, _ in Formatter().parse(fmt) if spec]
        except ValueError:
            return  # not a valid {}-format string: str.format will say so
        for spec in specs:
            if "{" in spec:
                raise SecurityError("a format width may not come from an argument")
            _check_widths(re.findall(r"\d+", spec))


def _check_widths(widths: Any) -> None:
    for width in widths:
        if width == "*" or (width and int(width) > MAX_SIZE):
            raise SecurityError(f"format width {width} is too large for a template")


def _check_sizes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and value > MAX_SIZE:
            raise SecurityError(f"size {value} is too large for a template")


def _limited(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)  # keeps Jinja's pass_context/pass_environment marks
    def wrapper(value: Any, *args: Any, **kwargs: Any) -> Any:
        if name == "format" and isinstance(value, str):
            check_format(value)
        _check_sizes(args, kwargs)
        return fn(value, *args, **kwargs)

    return wrapper


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment that refuses to build values larger than MAX_SIZE at once."""

    intercepted_binops = frozenset({"*", "**", "%"})  # also keeps them from constant folding

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("center", "indent", "format"):
            self.filters[name] = _limited(name, self.filters[name])

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and right > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is too large for a template")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_SIZE:
                    raise SecurityError("repetition builds too large a value for a template")
        if operator == "%" and isinstance(left, str):
            check_format(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            check_format(value.__self__)
        return wrapped

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(getattr(__obj, "__self__", None), str) and __obj.__name__ in _PADDING:
            _check_sizes(args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)
