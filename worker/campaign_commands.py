"""`milepost campaigns check|test`: every mistake in the campaign files, before anything is sent."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from rules.campaign import load_campaigns
from rules.examples import run_examples as run_campaign_examples
from rules.holidays import HolidaysError, load_holidays
from rules.model import Campaign
from rules.templates import TemplateProblem, TemplateStore
from worker.settings import get_settings


def _folder(directory: Path | None) -> Path:
    return directory or get_settings().campaigns


def segment_warnings(campaigns: list[Campaign], templates: TemplateStore, limit: int) -> list[str]:
    """SMS templates that render to more than ``limit`` segments for a sample customer."""
    warnings = []
    for campaign in campaigns:
        for step in campaign.steps:
            if step.channel != "sms":
                continue
            for language in ("zh", "en"):
                try:
                    rendered = templates.render_sample(step.template, "sms", language)
                except TemplateProblem:
                    continue  # already reported as an error by the loader
                if rendered.segments and rendered.segments > limit:
                    warnings.append(
                        f"{templates.path(step.template, language)}: renders to "
                        f"{rendered.segments} SMS segments for a sample customer "
                        f"(MILEPOST_SMS_MAX_SEGMENTS is {limit}); shorten it"
                    )
    return warnings


def check(directory: Path | None, out: Console, err: Console) -> bool:
    """Validate every campaign file and template in the folder; True when there is no error."""
    folder = _folder(directory)
    result = load_campaigns(folder)
    templates = TemplateStore(folder / "templates")
    limit = get_settings().sms_max_segments
    warnings = result.warnings + segment_warnings(result.campaigns, templates, limit)
    for error in result.errors:
        err.print(f"[red]{error}[/red]", highlight=False, soft_wrap=True)
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    bad = len({e.path for e in result.errors})
    out.print(
        f"{len(result.campaigns)} campaigns valid in {folder}"
        + (f"; {bad} files with {len(result.errors)} errors were not loaded." if bad else ".")
        + (f" {len(warnings)} warnings." if warnings else "")
    )
    return not result.errors


def run_examples(directory: Path | None, out: Console, err: Console) -> bool:
    """Run each campaign's ``examples:``; True when all come out as expected and all files load."""
    folder = _folder(directory)
    result = load_campaigns(folder)
    for error in result.errors:
        err.print(f"[red]{error}[/red]", highlight=False, soft_wrap=True)
    holidays = None
    if (folder / "holidays.yaml").exists():
        try:
            holidays = load_holidays(folder / "holidays.yaml")
        except HolidaysError as exc:
            err.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
            return False
    outcomes = run_campaign_examples(result.campaigns, holidays=holidays)
    passed = sum(o.passed for o in outcomes)
    failures = [f for o in outcomes for f in o.failures]
    for failure in failures:
        err.print(f"[red]{failure}[/red]", highlight=False, soft_wrap=True)
    untested = [o.campaign.id for o in outcomes if not o.campaign.examples]
    out.print(
        f"{passed} examples passed, {len(failures)} failed, in {len(outcomes)} campaigns."
        + (f" No examples: {', '.join(untested)}." if untested else "")
    )
    return not failures and not result.errors
