"""Template store: render both languages, catch mistakes at check time, keep the sandbox shut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rules.sample import sample_context
from rules.templates import TemplateProblem, TemplateStore

CAMPAIGN_TEMPLATES = Path(__file__).resolve().parents[1] / "campaigns" / "templates"

SMS_ZH = "【{{ dealer.name }}】{{ customer.title }}您好，您的{{ vehicle.model }}该保养了。"
SMS_EN = "Dear {{ customer.title }}, your {{ vehicle.model }} is due for service. {{ dealer.name }}"


def write(root: Path, name: str, zh: str | None, en: str | None) -> None:
    for language, text in (("zh", zh), ("en", en)):
        if text is not None:
            path = root / f"{name}.{language}.j2"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def context(language: str = "zh", **customer: Any) -> dict[str, Any]:
    return {
        "customer": {"title": "王先生" if language == "zh" else "Mr Wang", "language": language}
        | customer,
        "vehicle": {"model": "Camry", "projected_km": 5200},
        "today": {"holiday": "none"},
        "dealer": {"name": "Milepost Motors", "phone": "400-800-1234"},
    }


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    write(tmp_path, "service/sms", SMS_ZH, SMS_EN)
    return TemplateStore(tmp_path)


def only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


def test_it_renders_zh_as_ucs2_and_en_as_gsm7(store: TemplateStore) -> None:
    zh = store.render("service/sms", "zh", context("zh"), "sms")
    assert zh.body == "【Milepost Motors】王先生您好，您的Camry该保养了。"
    assert (zh.subject, zh.encoding, zh.segments) == (None, "UCS-2", 1)
    en = store.render("service/sms", "en", context("en"), "sms")
    assert en.body == "Dear Mr Wang, your Camry is due for service. Milepost Motors"
    assert (en.encoding, en.segments) == ("GSM-7", 1)
    assert store.check("service/sms", "sms") == []


def test_it_normalises_typographic_punctuation_in_sms(tmp_path: Path) -> None:
    write(tmp_path, "q/sms", "{{ customer.title }}", "“Hi” {{ customer.title }} – it’s time…")
    body = TemplateStore(tmp_path).render("q/sms", "en", context("en"), "sms").body
    assert body == '"Hi" Mr Wang - it\'s time...'


def test_it_splits_an_email_into_subject_and_body(tmp_path: Path) -> None:
    email = "Subject: Hello {{ customer.title }}\n\nDear {{ customer.title }},\n\nSee you.\n"
    write(tmp_path, "m/email", email, email)
    store = TemplateStore(tmp_path)
    rendered = store.render("m/email", "en", context("en"), "email")
    assert rendered.subject == "Hello Mr Wang"
    assert rendered.body == "Dear Mr Wang,\n\nSee you."
    assert (rendered.encoding, rendered.segments) == (None, None)
    assert store.check("m/email", "email") == []


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("Hello\n\nbody", 1, "must start with a 'Subject: …' line"),
        ("Subject: hi\nbody", 2, "blank line between"),
    ],
)
def test_check_wants_subject_then_blank_line_in_email(
    tmp_path: Path, source: str, line: int, message: str
) -> None:
    write(tmp_path, "m/email", "Subject: 你好\n\n正文", source)
    problem = only(TemplateStore(tmp_path).check("m/email", "email"))
    assert problem.startswith(f"{tmp_path}/m/email.en.j2:{line}: ")
    assert message in problem


def test_a_call_script_is_plain_text(tmp_path: Path) -> None:
    write(tmp_path, "c/call", "给{{ customer.title }}打电话", "Call {{ customer.title }}")
    rendered = TemplateStore(tmp_path).render("c/call", "zh", context("zh"), "call")
    assert rendered == type(rendered)(None, "给王先生打电话", None, None)


def test_strict_undefined_names_the_line_when_a_fact_is_absent(store: TemplateStore) -> None:
    write(store.root, "b/sms", "{{ customer.title }}\n{{ customer.days_to_birthday }}天", "x")
    with pytest.raises(TemplateProblem) as caught:
        store.render("b/sms", "zh", context("zh"), "sms")
    assert caught.value.line == 2
    assert "days_to_birthday" in str(caught.value)
    assert str(caught.value).startswith(f"{store.root}/b/sms.zh.j2:2: cannot render")


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        (
            "Hi\n{{ customer.nme }}",
            2,
            "unknown variable 'customer.nme' — did you mean 'customer.name'?",
        ),
        ("{{ customer.model }}", 1, "did you mean 'vehicle.model'?"),
        ("{{ vehicle['projectd_km'] }}", 1, "did you mean 'vehicle.projected_km'?"),
        ("\n\n{{ custmer.title }}", 3, "unknown name 'custmer'"),
        ("{{ phone }}", 1, "only customer, vehicle, today, dealer are defined"),
        ("{{ customer }}", 1, "'customer' used whole"),
        ("{% set k = 'vin' %}{{ vehicle[k] }}", 1, "cannot be checked"),
        ("{{ customer.__class__ }}", 1, "'customer.__class__' is not allowed"),
    ],
)
def test_check_finds_unknown_variables_with_line_and_suggestion(
    tmp_path: Path, source: str, line: int, message: str
) -> None:
    write(tmp_path, "t/sms", source, "{{ customer.title }}")
    problem = only(TemplateStore(tmp_path).check("t/sms", "sms"))
    assert problem.startswith(f"{tmp_path}/t/sms.zh.j2:{line}: "), problem
    assert message in problem


def test_names_the_template_defines_itself_are_fine(tmp_path: Path) -> None:
    source = (
        '{%- set wishes = {"spring-festival": "新春快乐"} -%}\n'
        "{% for word in ['a', 'b'] %}{{ loop.index }}{{ word }}{% endfor %}"
        '{{ wishes.get(today.holiday, "节日快乐") }}{{ range(2) | list | length }}'
    )
    write(tmp_path, "h/sms", source, source)
    store = TemplateStore(tmp_path)
    assert store.check("h/sms", "sms") == []
    assert store.render("h/sms", "zh", context("zh"), "sms").body == "1a2b节日快乐2"


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("line one\n{% if %}\n", 2, "syntax error"),
        ("{{ customer.title }}\n\n{% for x in y %}", 3, "syntax error"),
        ("{{ customer.title | nosuchfilter }}", 1, "No filter named 'nosuchfilter'"),
    ],
)
def test_check_reports_syntax_errors_with_line(
    tmp_path: Path, source: str, line: int, message: str
) -> None:
    write(tmp_path, "s/sms", "{{ customer.title }}", source)
    problem = only(TemplateStore(tmp_path).check("s/sms", "sms"))
    assert problem.startswith(f"{tmp_path}/s/sms.en.j2:{line}: ")
    assert message in problem


@pytest.mark.parametrize(
    ("source", "tag"),
    [
        ('hi\n{% include "other.j2" %}', "include"),
        ('{% extends "base.j2" %}\n{% block x %}{% endblock %}', "extends"),
        ('\n{% import "macros.j2" as m %}', "import"),
        ('\n{% from "macros.j2" import greet %}', "from … import"),
    ],
)
def test_include_extends_and_import_are_rejected(tmp_path: Path, source: str, tag: str) -> None:
    write(tmp_path, "x/sms", source, "{{ customer.title }}")
    store = TemplateStore(tmp_path)
    line = 1 if tag == "extends" else 2
    problem = only(store.check("x/sms", "sms"))
    assert (
        problem
        == f"{tmp_path}/x/sms.zh.j2:{line}: '{tag}' is not allowed: a template must stand alone"
    )
    with pytest.raises(TemplateProblem, match="not allowed"):
        store.render("x/sms", "zh", context("zh"), "sms")


def test_both_languages_are_required(tmp_path: Path) -> None:
    write(tmp_path, "one/sms", SMS_ZH, None)
    problem = only(TemplateStore(tmp_path).check("one/sms", "sms"))
    assert problem == f"{tmp_path}/one/sms.en.j2: missing (en; every template needs zh and en)"


def test_a_template_over_the_size_cap_is_refused_and_the_cap_is_configurable(
    tmp_path: Path,
) -> None:
    padded = "{# " + "x" * 8185 + " #}" + "hi"  # 8193 bytes that render to "hi"
    write(tmp_path, "big/sms", padded, "{{ customer.title }}")
    problem = only(TemplateStore(tmp_path).check("big/sms", "sms"))
    assert problem == f"{tmp_path}/big/sms.zh.j2: 8193 bytes, over the 8192-byte cap"
    assert TemplateStore(tmp_path, max_template_bytes=9000).check("big/sms", "sms") == []


def test_output_over_the_cap_is_refused_and_the_cap_is_configurable(tmp_path: Path) -> None:
    source = "{% for i in range(500) %}{{ customer.title }}{% endfor %}"  # 500 x 9 bytes
    write(tmp_path, "loop/call", source, source)
    with pytest.raises(TemplateProblem, match="over 4096 bytes"):
        TemplateStore(tmp_path).render("loop/call", "zh", context("zh"), "call")
    roomy = TemplateStore(tmp_path, max_output_bytes=5000)
    assert len(roomy.render("loop/call", "zh", context("zh"), "call").body) == 1500


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("dealer.name.__class__.__mro__", "unsafe"),
        ("''.__class__.__subclasses__()", "unsafe"),
        ("customer.title.format.__globals__", "unsafe"),
        ("{}.update({'title': 'x'})", "unsafe"),
        ("'x' * 100000", "too large"),
        ("9 ** 9999999", "too large"),
        ("customer.title.center(999999999)", "too large"),
        ("customer.title.zfill(width=99999)", "too large"),
        ("customer.title | center(999999999)", "too large"),
        ("customer.title | indent(999999999, true)", "too large"),
        ("'%0999999999d' % 1", "too large"),
        ("'%*d' % (999999999, 1)", "too large"),
        ("'%0999999999d' | format(1)", "too large"),
        ("'{:>999999999}'.format(1)", "too large"),
        ("'{:{}}'.format(1, 999999999)", "may not come from an argument"),
    ],
)
def test_the_sandbox_blocks_escapes_and_bombs(
    tmp_path: Path, expression: str, message: str
) -> None:
    write(tmp_path, "evil/sms", "{{ " + expression + " }}", "{{ customer.title }}")
    store = TemplateStore(tmp_path)
    with pytest.raises(TemplateProblem, match=message):
        store.render("evil/sms", "zh", context("zh"), "sms")
    assert message in only(store.check("evil/sms", "sms"))


def test_ordinary_formatting_still_works(tmp_path: Path) -> None:
    source = (
        "{{ '%05d' % 42 }} {{ '{:,}'.format(1234567) }} {{ 'ab' * 3 }} {{ 2 ** 10 }}"
        " {{ customer.title | center(9) }}|{{ '%.1f' | format(3.14159) }}"
    )
    write(tmp_path, "f/call", source, source)
    rendered = TemplateStore(tmp_path).render("f/call", "en", context("en"), "call")
    assert rendered.body == "00042 1,234,567 ababab 1024  Mr Wang |3.1"


def test_an_empty_sms_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "e/sms", "{% if false %}x{% endif %}  \n", "x")
    with pytest.raises(TemplateProblem, match="empty SMS"):
        TemplateStore(tmp_path).render("e/sms", "zh", context("zh"), "sms")


def test_templates_are_compiled_once(store: TemplateStore) -> None:
    first = store.render("service/sms", "en", context("en"), "sms")
    (store.root / "service/sms.en.j2").write_text("changed {{ customer.title }}")
    assert store.render("service/sms", "en", context("en"), "sms") == first


@pytest.mark.parametrize("name", ["../etc/passwd", "/abs/sms", "Upper/sms", "nodir"])
def test_template_names_cannot_leave_the_root(store: TemplateStore, name: str) -> None:
    assert "bad template name" in only(store.check(name, "sms"))
    with pytest.raises(TemplateProblem):
        store.render(name, "zh", context("zh"), "sms")


def test_render_sample_counts_segments_for_length_warnings(tmp_path: Path) -> None:
    long_zh = "{{ customer.title }}" + "请" * 80
    write(tmp_path, "long/sms", long_zh, "{{ customer.title }}")
    rendered = TemplateStore(tmp_path).render_sample("long/sms", "sms", "zh")
    assert (rendered.encoding, rendered.segments) == ("UCS-2", 2)
    custom = TemplateStore(tmp_path).render_sample("long/sms", "sms", "en", {"name": "D"})
    assert custom.body == sample_context("en")["customer"]["title"]


def test_the_shipped_templates_check_clean() -> None:
    store = TemplateStore(CAMPAIGN_TEMPLATES)
    names = sorted(
        {
            p.relative_to(CAMPAIGN_TEMPLATES).as_posix().split(".")[0]
            for p in CAMPAIGN_TEMPLATES.rglob("*.j2")
        }
    )
    assert names
    for name in names:
        assert store.check(name, name.rsplit("/", 1)[1]) == [], name
