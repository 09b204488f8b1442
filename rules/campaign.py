"""Campaign files: load ``campaigns/*.yaml``, validate them strictly, build Campaign objects.

A file with any error is not loaded; the others are. Every error names file:line and a hint.
"""

from __future__ import annotations

import re
from pathlib import Path

from rules import fields
from rules.catalog import CATALOG
from rules.condition_parser import ConditionParser
from rules.conditions import Condition
from rules.durable_json import compile_condition
from rules.errors import CampaignError, CompileError, Problems, did_you_mean
from rules.holidays import HolidaysError, load_holidays
from rules.model import Campaign, Example, LoadResult, Step
from rules.steps import CHANNELS, parse_examples, parse_steps
from rules.templates import TemplateStore
from rules.yamlsource import LineDict, load_yaml

KEYS = (
    *("id", "name", "subject", "when", "once", "every", "priority", "marketing"),
    *("quiet_hours", "steps", "examples"),
)
REQUIRED = ("id", "name", "subject", "when", "steps")
SUBJECTS = ("vehicle", "customer")
ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
NOT_CAMPAIGNS = frozenset({"holidays.yaml"})  # data files that live beside the campaigns
__all__ = ["CHANNELS", "Campaign", "CampaignError", "Example", "LoadResult", "Step"]
__all__ += ["load_campaigns"]


def load_campaigns(directory: Path) -> LoadResult:
    """Load every ``*.yaml`` campaign in ``directory``; templates are in ``directory/templates``."""
    result = LoadResult([], [], [])
    if not directory.is_dir():
        hint = "set MILEPOST_CAMPAIGNS or pass the campaign folder"
        result.errors.append(CampaignError(directory, 0, "no such folder", hint))
        return result
    holidays: set[str] | None = None
    if (directory / "holidays.yaml").exists():
        try:
            holidays = set(load_holidays(directory / "holidays.yaml").values())
        except HolidaysError as exc:
            result.warnings.append(f"{exc} (today.holiday values are not checked)")
    templates = TemplateStore(directory / "templates")
    seen: dict[str, Campaign] = {}
    for path in sorted(directory.glob("*.y*ml")):
        if path.suffix == ".yml":
            result.warnings.append(f"{path}: ignored; campaign files end in .yaml")
            continue
        if path.name in NOT_CAMPAIGNS:
            continue
        problems = Problems(path)
        campaign = _load_file(path, problems, templates, holidays, result.warnings)
        if campaign is not None and campaign.id in seen:
            first = seen[campaign.id].path
            problems.add(campaign.line, f"id {campaign.id!r} is taken", f"{first} has it too")
        result.errors.extend(problems.errors)
        if campaign is not None and not problems:
            seen[campaign.id] = campaign
            result.campaigns.append(campaign)
    return result


def _load_file(
    path: Path,
    problems: Problems,
    templates: TemplateStore,
    holidays: set[str] | None,
    warnings: list[str],
) -> Campaign | None:
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"), path)
    except CampaignError as exc:
        problems.errors.append(exc)
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(0, f"cannot read: {exc}", "save it as UTF-8 text")
        return None
    if not isinstance(raw, LineDict):
        problems.add(1, "a campaign file is a mapping of keys", "start with `id: <campaign-id>`")
        return None
    campaign = _campaign(raw, path, problems, templates, holidays)
    if campaign is not None and not problems:
        if campaign.id != path.stem:
            warnings.append(
                f"{path}:{campaign.line}: id {campaign.id!r} differs from the file name"
            )
        if not campaign.examples:
            warnings.append(f"{path}:1: no examples, so `milepost campaigns test` cannot check it")
    return campaign


def _campaign(
    raw: LineDict,
    path: Path,
    problems: Problems,
    templates: TemplateStore,
    holidays: set[str] | None,
) -> Campaign | None:
    for key in raw:
        if key not in KEYS:
            problems.add(raw.at(key), f"unknown key {key!r}", did_you_mean(str(key), KEYS))
    for key in REQUIRED:
        if key not in raw:
            problems.add(raw.line, f"missing {key}:", f"every campaign needs {', '.join(REQUIRED)}")
    campaign_id, name = raw.get("id"), raw.get("name")
    if "id" in raw and not (isinstance(campaign_id, str) and ID.match(campaign_id)):
        problems.add(raw.at("id"), f"bad id {campaign_id!r}", "use lower-case-words-with-dashes")
    if "name" in raw and not (isinstance(name, str) and name.strip()):
        problems.add(raw.at("name"), "name: must be text", "e.g. name: First service reminder")
    subject = raw.get("subject")
    if subject not in SUBJECTS:
        if "subject" in raw:
            hint = did_you_mean(str(subject), SUBJECTS)
            problems.add(raw.at("subject"), f"unknown subject {subject!r}", hint)
        subject = "vehicle"  # go on checking the rest as if for a vehicle
    priority = raw.get("priority", 50)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 100:
        problems.add(raw.at("priority"), f"priority: {priority!r}", "a whole number from 0 to 100")
    marketing = raw.get("marketing", True)
    if not isinstance(marketing, bool):
        problems.add(raw.at("marketing"), f"marketing: {marketing!r}", "write true or false")
    quiet = raw.get("quiet_hours")
    window = fields.quiet_hours(quiet, raw.at("quiet_hours"), problems) if quiet else None
    repeat = fields.repetition(raw, subject, problems)
    parser = ConditionParser(problems, subject, holidays)
    when = parser.parse(raw["when"], raw.at("when")) if "when" in raw else None
    if when is not None:
        try:
            compile_condition(when)
        except CompileError as exc:
            problems.add(raw.at("when"), str(exc), "split it into simpler campaigns")
    steps = None
    if "steps" in raw:
        steps = parse_steps(raw["steps"], raw.at("steps"), parser, templates)
    examples: tuple[Example, ...] | None = ()
    if "examples" in raw:
        examples = parse_examples(raw["examples"], raw.at("examples"), parser)
    if when is not None and steps is not None:
        _check_printed(when, steps, subject, templates, problems)
    if problems or when is None or repeat is None or steps is None or examples is None:
        return None
    return Campaign(
        id=str(campaign_id),
        name=str(name).strip(),
        subject=subject,
        when=when,
        once=repeat[0],
        every_days=repeat[1],
        priority=priority,
        marketing=marketing,
        quiet_hours=window,
        steps=steps,
        examples=examples,
        path=path,
        line=raw.at("id"),
    )


def _check_printed(
    when: Condition,
    steps: tuple[Step, ...],
    subject: str,
    templates: TemplateStore,
    problems: Problems,
) -> None:
    """A template may print an optional fact only if ``when`` guarantees it: else some customer's
    message would fail at send time (StrictUndefined) instead of here."""
    guaranteed = when.present()
    for step in steps:
        reported = set(guaranteed)  # once per fact and step, at its first file and line
        for path, line, fact in templates.printed(step.template):
            if CATALOG[fact].optional and fact not in reported:
                reported.add(fact)
                problems.add(
                    step.line,
                    f"{path}:{line} prints {fact}, which not every {subject} has",
                    f"add `{fact}: {{exists: true}}` under when:, or print it inside"
                    f" {{% if {fact} is defined %}}",
                )
