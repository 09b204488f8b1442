"""Marketer-written Jinja2 message templates: check them against the catalog, render them safely.

Files are read here, not through a Jinja loader, so include/extends/import have nothing to load;
they are rejected anyway, with their line. Jinja's sandbox limits no memory: rules.sandbox and
the size caps here do.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes

from rules.catalog import LANGUAGES
from rules.model import CHANNELS
from rules.sample import sample_context
from rules.sandbox import LimitedSandbox
from rules.sms import fit
from rules.template_checks import email_problems, printed_facts, static_problems

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)+$")


class TemplateProblem(Exception):
    """A template that cannot be used; str() is ``path:line: message``."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


@dataclass(frozen=True)
class Rendered:
    """A rendered message; encoding and segments are set for SMS only, subject for e-mail only."""

    subject: str | None
    body: str
    encoding: str | None
    segments: int | None


class TemplateStore:
    """The templates under ``root``: ``<name>.<language>.j2``, e.g. ``first-service/sms.zh.j2``."""

    def __init__(
        self, root: Path, *, max_template_bytes: int = 8192, max_output_bytes: int = 4096
    ) -> None:
        self.root = root
        self.max_template_bytes = max_template_bytes
        self.max_output_bytes = max_output_bytes
        self.env = LimitedSandbox(undefined=StrictUndefined, autoescape=False)
        # Worker threads may race to fill these; parsing or compiling twice is harmless.
        self._parsed: dict[tuple[str, str], tuple[str, nodes.Template]] = {}
        self._compiled: dict[tuple[str, str, str], Template] = {}

    def path(self, name: str, language: str) -> Path:
        """The file holding ``name`` in ``language``."""
        return self.root / f"{name}.{language}.j2"

    def names(self) -> set[str]:
        """The templates there are, by name (``first-service/sms``), in any language."""
        suffixes = tuple(f".{language}.j2" for language in LANGUAGES)
        found = set()
        for file in self.root.rglob("*.j2"):
            relative = file.relative_to(self.root).as_posix()
            for suffix in suffixes:
                if relative.endswith(suffix):
                    found.add(relative.removesuffix(suffix))
        return found

    def parsed(self, name: str, language: str) -> tuple[str, nodes.Template]:
        """The source of ``name`` in ``language`` and its syntax tree, read and parsed once.

        Raises TemplateProblem (missing, unreadable, too large) or TemplateSyntaxError.
        """
        key = (name, language)
        found = self._parsed.get(key)
        if found is None:
            path = self.path(name, language)
            source = self._read(path, language)
            found = self._parsed[key] = (source, self.env.parse(source, name, str(path)))
        return found

    def printed(self, name: str) -> list[tuple[Path, int, str]]:
        """(file, line, fact) for each catalog fact a language version of ``name`` prints
        unguarded; files that cannot be read or parsed are check()'s to report."""
        found = []
        for language in LANGUAGES:
            try:
                _, tree = self.parsed(name, language)
            except (TemplateProblem, TemplateSyntaxError):
                continue
            path = self.path(name, language)
            found += [(path, line, fact) for fact, line in printed_facts(tree).items()]
        return found

    def check(self, name: str, channel: str) -> list[str]:
        """Every problem with both language versions of ``name``, each naming file and line."""
        if not NAME.match(name):
            return [f"{self.root}: bad template name {name!r}: use '<campaign>/<step>'"]
        if channel not in CHANNELS:
            return [f"{name}: unknown channel {channel!r}, expected one of {', '.join(CHANNELS)}"]
        problems: list[str] = []
        for language in LANGUAGES:
            template, found = self._analyse(name, language, channel)
            problems.extend(str(p) for p in found)
            if template is not None:
                try:  # runtime errors (a bad filter argument, a cap) show up with sample facts
                    self.render_sample(name, channel, language)
                except TemplateProblem as exc:
                    problems.append(str(exc))
        return problems

    def render(
        self, name: str, language: str, context: Mapping[str, Any], channel: str
    ) -> Rendered:
        """Render ``name`` for ``channel``; raises TemplateProblem naming the file and line."""
        template = self._template(name, language, channel)
        path = self.path(name, language)
        pieces, size = [], 0
        try:
            for piece in template.generate(context):  # streamed, to stop at the cap
                size += len(piece.encode("utf-8"))
                if size > self.max_output_bytes:
                    raise TemplateProblem(
                        path, None, f"renders to over {self.max_output_bytes} bytes (the cap)"
                    )
                pieces.append(piece)
        except TemplateProblem:
            raise
        except Exception as exc:
            raise TemplateProblem(path, _template_line(exc, path), f"cannot render: {exc}") from exc
        text = "".join(pieces).strip()
        if channel == "email":
            first, _, body = text.partition("\n")
            if not first.startswith("Subject:"):
                raise TemplateProblem(path, 1, "an e-mail must start with a 'Subject:' line")
            return Rendered(first.removeprefix("Subject:").strip(), body.strip(), None, None)
        if channel == "sms":
            if not text:
                raise TemplateProblem(path, None, "renders to an empty SMS")
            body, encoding, segments = fit(text)
            return Rendered(None, body, encoding, segments)
        return Rendered(None, text, None, None)

    def render_sample(
        self,
        name: str,
        channel: str,
        language: str,
        dealer: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """Render with representative facts from the catalog (e.g. to warn about SMS length)."""
        return self.render(name, language, sample_context(language, dealer), channel)

    def _template(self, name: str, language: str, channel: str) -> Template:
        key = (name, language, channel)
        template = self._compiled.get(key)
        if template is None:
            template, problems = self._analyse(name, language, channel)
            if template is None:
                raise problems[0]
            self._compiled[key] = template
        return template

    def _analyse(
        self, name: str, language: str, channel: str
    ) -> tuple[Template | None, list[TemplateProblem]]:
        """The compiled template, or None and every problem found before rendering."""
        if not NAME.match(name) or language not in LANGUAGES:
            return None, [TemplateProblem(self.root, None, f"no template {name!r} in {language!r}")]
        path = self.path(name, language)
        try:
            source, tree = self.parsed(name, language)
            found = static_problems(tree) + (email_problems(source) if channel == "email" else [])
            if found:
                return None, [TemplateProblem(path, line, message) for line, message in found]
            code = self.env.compile(tree, name, str(path))
        except TemplateProblem as exc:
            return None, [exc]
        except TemplateSyntaxError as exc:  # also an unknown filter or test
            return None, [TemplateProblem(path, exc.lineno, f"syntax error: {exc.message}")]
        return self.env.template_class.from_code(self.env, code, self.env.make_globals(None)), []

    def _read(self, path: Path, language: str) -> str:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise TemplateProblem(
                path, None, f"missing ({language}; every template needs zh and en)"
            ) from None
        except OSError as exc:
            raise TemplateProblem(path, None, f"cannot read: {exc.strerror or exc}") from None
        if len(raw) > self.max_template_bytes:
            raise TemplateProblem(
                path, None, f"{len(raw)} bytes, over the {self.max_template_bytes}-byte cap"
            )
        try:
            return raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise TemplateProblem(path, line, "not valid UTF-8") from None


def _template_line(exc: BaseException, path: Path) -> int | None:
    """The template line an exception was raised on (Jinja rewrites frames to template lines)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno
    return line
