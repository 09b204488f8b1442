"""Campaign mistakes are caught at load time with file:line, a message and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.campaign import load_campaigns
from rules.errors import CampaignError

GOOD = """\
id: good
name: Good campaign
subject: vehicle
when: {vehicle.age_days: 5}
once: per vehicle
steps:
  - send: sms
    template: x/sms
"""


def write_dir(directory: Path, files: dict[str, str]) -> None:
    for name in ("x/sms", "x/call", "x/email"):
        for language in ("zh", "en"):
            path = directory / "templates" / f"{name}.{language}.j2"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("Hello {{ customer.title }}", encoding="utf-8")
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")


def errors_for(tmp_path: Path, text: str) -> list[CampaignError]:
    write_dir(tmp_path, {"bad.yaml": text})
    result = load_campaigns(tmp_path)
    assert result.campaigns == []
    assert result.errors, "expected an error"
    assert all(e.hint for e in result.errors), "every error needs a hint"
    return result.errors


def replace(old: str, new: str) -> str:
    """GOOD as ``bad.yaml`` (id: bad) with one mistake put in."""
    text = GOOD.replace("id: good", "id: bad")
    assert old in text
    return text.replace(old, new)


# (the file, the line of the first error, words in its message, words in its hint)
MISTAKES = [
    (
        replace("vehicle.age_days: 5", "vehicle.projectd_km: {gte: 4500}"),
        4,
        "unknown fact 'vehicle.projectd_km'",
        "did you mean 'vehicle.projected_km'?",
    ),
    (replace("vehicle.age_days", "vehicel.age_days"), 4, "unknown fact", "'vehicle.age_days'"),
    (replace("5}", "{gtee: 5}}"), 4, "unknown operator 'gtee'", "did you mean 'gte'"),
    (replace("send: sms", "send: smss"), 7, "unknown channel 'smss'", "did you mean 'sms'"),
    (replace("once:", "priorty: 3\nonce:"), 5, "unknown key 'priorty'", "did you mean 'priority'"),
    (replace("    template", "    templat"), 8, "unknown key 'templat'", "'template'"),
    (replace("vehicle.age_days: 5", "customer.name: Wang"), 4, "cannot be used", "templates"),
    (replace("vehicle.age_days: 5", "customer.tier: gld"), 4, "'gld' is not a value", "'gold'"),
    (replace("vehicle.age_days: 5", "vehicle.service_booked: 1"), 4, "true or false", "true"),
    (replace("vehicle.age_days: 5", 'vehicle.age_days: "5"'), 4, "is a number", "quotes"),
    (replace("vehicle.age_days: 5", "customer.tier: {lt: gold}"), 4, "compares numbers", "in:"),
    (replace("5}", "{between: [7, 5]}}"), 4, "low <= high", "swap"),
    (replace("5}", "{between: [7]}}"), 4, "between takes [low, high]", "between: [30, 60]"),
    (replace("5}", "{in: []}}"), 4, "in takes a list", "e.g."),
    (replace("5}", "[1, 2]}"), 4, "a list is not a value", "in:"),
    (replace("5}", "null}"), 4, "no value", "exists: false"),
    (replace("5}", "{exists: maybe}}"), 4, "exists takes true or false", "exists: false"),
    (replace("vehicle.age_days: 5", "all: []"), 4, "needs a list of conditions", "-"),
    (
        replace("subject: vehicle", "subject: customer").replace(
            "once: per vehicle", "once: per customer"
        ),
        4,
        "a subject: customer campaign cannot use 'vehicle.age_days'",
        "subject: vehicle",
    ),
    (replace("x/sms", "x/nothing"), 8, "missing", "add x/nothing.zh.j2 and x/nothing.en.j2"),
    (replace("x/sms", "x/smss"), 8, "missing", "did you mean 'x/sms'?"),
    (replace("send: sms", "send: email"), 8, "Subject", "fix the template"),
    (replace("x/sms", "x/sms\n    due: 2d"), 9, "due: is for calls only", "send: call"),
    (replace("    template", "    after: 7 days\n    template"), 8, "not a duration", "7d"),
    (replace("once: per vehicle", "every: 36h"), 5, "whole days", "180d"),
    (replace("once: per vehicle", "once: per vehicl"), 5, "not a choice", "'per vehicle'"),
    (replace("once: per vehicle", "once: per customer"), 5, "does not fit", "once: per vehicle"),
    (replace("once: per vehicle", "once: per day\nevery: 7d"), 6, "both given", "keep one"),
    (replace("once: per vehicle\n", ""), 1, "missing once: or every:", "every: 180d"),
    (replace("once:", "priority: 101\nonce:"), 5, "priority: 101", "0 to 100"),
    (replace("once:", "marketing: no thanks\nonce:"), 5, "marketing:", "true or false"),
    (replace("once:", "quiet_hours: 9-20\nonce:"), 5, "not a window", "09:00-20:00"),
    (replace("id: bad", "id: Bad Campaign"), 1, "bad id", "lower-case"),
    (replace("name: Good campaign\n", ""), 1, "missing name:", "every campaign needs"),
    (
        replace("vehicle.age_days: 5", "vehicle.age_days: 5, vehicle.age_days: 6"),
        4,
        "given twice",
        "first at",
    ),
    (replace("steps:", "steps:\n - - x\n  bad"), 8, "not valid YAML", "indentation"),
    (
        replace("steps:\n  - send: sms\n    template: x/sms\n", "steps: []\n"),
        6,
        "steps: needs a list",
        "send: sms",
    ),
    (
        replace("    template: x/sms\n", "    unless: vehicle.age_days\n    template: x/sms\n"),
        8,
        "alone is not a condition",
        "compare it",
    ),
    (
        GOOD.replace("id: good", "id: bad")
        + "examples:\n  - facts: {vehicle: {age_dys: 5}}\n    expect: match\n",
        10,
        "unknown fact 'vehicle.age_dys'",
        "'vehicle.age_days'",
    ),
    (
        GOOD.replace("id: good", "id: bad")
        + "examples:\n  - facts: {vehicle: {age_days: 5}}\n    expect: matches\n",
        11,
        "expect: 'matches'",
        "expect: match or expect: no match",
    ),
    (
        GOOD.replace("id: good", "id: bad")
        + "examples:\n  - facts: {vehicles: {age_days: 5}}\n    expect: match\n",
        10,
        "not a scope",
        "'vehicle'",
    ),
    ("- just\n- a list\n", 1, "a campaign file is a mapping", "id:"),
]


@pytest.mark.parametrize(("text", "line", "message", "hint"), MISTAKES)
def test_a_mistake_names_file_line_and_a_hint(
    tmp_path: Path, text: str, line: int, message: str, hint: str
) -> None:
    first = errors_for(tmp_path, text)[0]
    assert (first.path, first.line) == (tmp_path / "bad.yaml", line), str(first)
    assert message in first.message and hint in first.hint, str(first)
    assert str(first) == f"{tmp_path / 'bad.yaml'}:{line}: {first.message} — {first.hint}"


def test_str_reads_like_the_contract() -> None:
    error = CampaignError(
        "campaigns/x.yaml",
        12,
        "unknown fact 'vehicle.projectd_km'",
        "did you mean 'vehicle.projected_km'?",
    )
    expected = (
        "campaigns/x.yaml:12: unknown fact 'vehicle.projectd_km'"
        " — did you mean 'vehicle.projected_km'?"
    )
    assert str(error) == expected


def test_every_mistake_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = replace("vehicle.age_days: 5", "vehicle.age_dys: 5").replace("send: sms", "send: fax")
    errors = errors_for(tmp_path, text + "colour: red\n")
    assert [e.line for e in errors] == [9, 4, 7]


def test_an_unknown_holiday_key_is_caught_when_the_holiday_file_is_there(tmp_path: Path) -> None:
    (tmp_path / "holidays.yaml").write_text("spring-festival: [2026-02-17]\n", encoding="utf-8")
    errors = errors_for(tmp_path, replace("vehicle.age_days: 5", "today.holiday: spring-festivl"))
    assert "did you mean 'spring-festival'?" in str(errors[0])


def test_a_condition_too_big_for_durable_rules_is_refused(tmp_path: Path) -> None:
    pair = (
        "    - any: [{{vehicle.visits: {n}, vehicle.age_days: {n}}},"
        " {{vehicle.visits: -{n}, vehicle.age_days: -{n}}}]\n"
    )
    when = "when:\n  all:\n" + "".join(pair.format(n=n) for n in range(1, 13))
    errors = errors_for(tmp_path, replace("when: {vehicle.age_days: 5}\n", when))
    assert errors[0].line == 4 and "engine rules" in errors[0].message


def test_a_condition_too_wide_for_durable_rules_is_refused(tmp_path: Path) -> None:
    when = "when:\n  any:\n" + "".join(f"    - vehicle.age_days: {{lt: {n}}}\n" for n in range(60))
    errors = errors_for(tmp_path, replace("when: {vehicle.age_days: 5}\n", when))
    assert errors[0].line == 4 and "too many alternatives" in errors[0].message


def test_a_broken_file_is_not_loaded_and_the_good_ones_are(tmp_path: Path) -> None:
    broken = replace("vehicle.age_days", "vehicle.agedays")
    write_dir(
        tmp_path,
        {"good.yaml": GOOD, "bad.yaml": broken, "holidays.yaml": "new-year: [2026-01-01]\n"},
    )
    result = load_campaigns(tmp_path)
    assert [c.id for c in result.campaigns] == ["good"]
    assert [(e.path.name, e.line) for e in result.errors] == [("bad.yaml", 4)]


def test_two_files_cannot_share_an_id(tmp_path: Path) -> None:
    write_dir(tmp_path, {"good.yaml": GOOD, "other.yaml": GOOD})
    result = load_campaigns(tmp_path)
    assert [c.path.name for c in result.campaigns] == ["good.yaml"]
    [error] = result.errors
    assert (
        error.path.name == "other.yaml" and "taken" in error.message and "good.yaml" in error.hint
    )


def test_warnings_do_not_stop_loading(tmp_path: Path) -> None:
    write_dir(tmp_path, {"renamed.yaml": GOOD, "old.yml": GOOD})
    result = load_campaigns(tmp_path)
    assert [c.id for c in result.campaigns] == ["good"] and result.errors == []
    text = "\n".join(result.warnings)
    assert "differs from the file name" in text and "no examples" in text and "old.yml" in text


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    [error] = load_campaigns(tmp_path / "nowhere").errors
    assert error.line == 0 and str(error).startswith(f"{tmp_path / 'nowhere'}: no such folder")
