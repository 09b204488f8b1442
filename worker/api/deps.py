"""What every route needs: this process's runtime, and pages rendered from template files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from worker.runtime import Runtime, get_runtime

TEMPLATES = Path(__file__).with_name("templates")
_pages = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
)
# The pages carry a link's token in their URL: keep it out of caches, referrers and indexes.
PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}


def runtime(request: Request) -> Runtime:
    """The runtime the app was built with, else this process's (built on first use)."""
    given: Runtime | None = request.app.state.runtime
    return given if given is not None else get_runtime()


def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The HTML page ``templates/<name>.html`` rendered with ``context``."""
    html = _pages.get_template(f"{name}.html").render(**context)
    return HTMLResponse(html, status_code=status_code, headers=PRIVATE_HEADERS)
