"""`milepost campaigns check|test`: a marketer's mistakes named by file and line, before sending."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from worker.cli import app

ROOT = Path(__file__).resolve().parents[1]


def copy_campaigns(tmp_path: Path) -> Path:
    folder = tmp_path / "campaigns"
    shutil.copytree(ROOT / "campaigns", folder)
    return folder


def test_the_shipped_campaigns_check_and_their_examples_pass() -> None:
    runner = CliRunner()
    checked = runner.invoke(app, ["campaigns", "check", str(ROOT / "campaigns")])
    tested = runner.invoke(app, ["campaigns", "test", str(ROOT / "campaigns")])
    assert checked.exit_code == 0, checked.output
    assert "22 campaigns valid" in checked.output
    assert tested.exit_code == 0, tested.output
    assert " 0 failed" in tested.output


def test_a_broken_file_is_named_with_its_line_and_the_others_still_load(tmp_path: Path) -> None:
    folder = copy_campaigns(tmp_path)
    path = folder / "birthday.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "customer.days_to_birthday", "customer.days_to_bday"
        ),
        encoding="utf-8",
    )

    result = CliRunner().invoke(app, ["campaigns", "check", str(folder)])

    assert result.exit_code == 1
    assert "birthday.yaml:" in result.output and "days_to_birthday" in result.output
    assert "21 campaigns valid" in result.output


def test_a_template_with_an_unknown_variable_fails_the_check(tmp_path: Path) -> None:
    folder = copy_campaigns(tmp_path)
    (folder / "templates/birthday/sms.en.j2").write_text("Happy birthday {{ customer.nmae }}!\n")

    result = CliRunner().invoke(app, ["campaigns", "check", str(folder)])

    assert result.exit_code == 1
    assert "sms.en.j2:1" in result.output and "customer.nmae" in result.output


def test_an_sms_longer_than_the_segment_limit_is_a_warning(tmp_path: Path, monkeypatch) -> None:
    folder = copy_campaigns(tmp_path)
    (folder / "templates/birthday/sms.zh.j2").write_text("祝您生日快乐！" * 40 + "\n")
    monkeypatch.setenv("MILEPOST_SMS_MAX_SEGMENTS", "2")
    from worker.settings import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["campaigns", "check", str(folder)])
    get_settings.cache_clear()

    assert result.exit_code == 0
    assert "sms.zh.j2: renders to 5 SMS segments" in result.output


def test_a_failing_example_names_the_file_and_line(tmp_path: Path) -> None:
    folder = copy_campaigns(tmp_path)
    path = folder / "first-service.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("expect: match", "expect: no match", 1),
        encoding="utf-8",
    )

    result = CliRunner().invoke(app, ["campaigns", "test", str(folder)])

    assert result.exit_code == 1
    assert "first-service.yaml:" in result.output and "expects no match, got match" in result.output


# The playbook (../shared/playbook.md), campaign by campaign: what it must send.
PLAYBOOK = {
    "delivery-thank-you": {"sms"},  # within 24 h of delivery
    "sales-manager-call": {"call"},  # within 24 h, the six-point script
    "first-service": {"sms", "call"},
    "first-service-follow-up": {"call"},
    "periodic-service": {"sms", "call"},  # by projected mileage or time
    "repair-follow-up": {"call"},  # about 3 days after, dropped after 15
    "birthday": {"sms"},
    "birthday-diamond-call": {"call"},  # diamond members get a call
    "holiday-greetings": {"sms"},
    "insurance-renewal": {"sms"},  # 30 days before
    "insurance-renewal-call": {"call"},  # 15 days before
    "annual-inspection": {"sms"},
    "warranty-ending": {"sms", "call"},
    "membership-expiry": {"sms", "email"},
    "upgrade-eligible": {"call"},
    "win-back": {"sms", "call"},  # lost for 12 months
    "open-complaint": {"call"},  # the manager calls
}


def test_every_campaign_of_the_playbook_ships_with_its_channels() -> None:
    from rules.campaign import load_campaigns

    loaded = {c.id: c for c in load_campaigns(ROOT / "campaigns").campaigns}
    missing = sorted(set(PLAYBOOK) - set(loaded))
    assert not missing, missing
    channels = {cid: {step.channel for step in loaded[cid].steps} for cid in PLAYBOOK}
    assert channels == PLAYBOOK
