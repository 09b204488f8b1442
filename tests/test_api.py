"""The HTTP API: Twilio webhooks (signed or refused), unsubscribe links, health."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from channels.base import Message
from channels.email import SMTPEmailChannel, SMTPServer
from channels.unsubscribe import make_token
from crm.consent import set_consent
from crm.db import get_engine
from crm.models import Consent, Customer, Delivery, table
from worker.api.app import create_app
from worker.runtime import Runtime
from worker.settings import Settings

AUTH_TOKEN = "test-twilio-auth-token"
BASE = "https://care.example.com/milepost"
SECRET = "test-secret-key"
PHONE, OTHER_PHONE = "+8613812341234", "+8613900001111"
C, D, CS = table(Customer), table(Delivery), table(Consent)
NOW = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
_occurrences = itertools.count(1)


@pytest.fixture
def api_runtime(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Runtime:
    """The runtime on a fresh database, configured for Twilio webhooks behind a public URL."""
    monkeypatch.setenv("MILEPOST_TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("MILEPOST_PUBLIC_BASE_URL", BASE)
    monkeypatch.setenv("MILEPOST_SECRET_KEY", SECRET)
    rt: Runtime = request.getfixturevalue("runtime")  # reads the settings set above
    with rt.engine.begin() as conn:
        conn.execute(
            insert(C),
            [
                {"id": 1, "code": "C1", "name": "王伟", "phone": PHONE, "email": "w@example.cn"},
                {
                    "id": 2,
                    "code": "C2",
                    "name": "李娜",
                    "phone": PHONE,
                    "email": None,
                },  # same family phone
                {"id": 3, "code": "C3", "name": "张敏", "phone": OTHER_PHONE, "email": None},
            ],
        )
    return rt


@pytest.fixture
def client(api_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(api_runtime)) as test_client:
        yield test_client


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def twilio_post(client: TestClient, path: str, params: dict[str, str]) -> Any:
    """POST ``params`` as Twilio would, signed for the public URL."""
    headers = {"X-Twilio-Signature": sign(BASE + path, params)}
    return client.post(path, data=params, headers=headers)


def add_delivery(rt: Runtime, status: str, sid: str | None, channel: str = "sms") -> int:
    with rt.engine.begin() as conn:
        return int(
            conn.execute(
                insert(D).returning(D.c.id),
                {
                    "campaign": "first-service",
                    "step": 0,
                    "subject_id": 1,
                    "occurrence": f"once-{next(_occurrences)}",
                    "customer_id": 1,
                    "channel": channel,
                    "template": "first-service/sms",
                    "due_at": NOW,
                    "status": status,
                    "provider_id": sid,
                    "created_at": NOW,
                    "updated_at": NOW,
                },
            ).scalar_one()
        )


def delivery(rt: Runtime, delivery_id: int) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        return dict(conn.execute(select(D).where(D.c.id == delivery_id)).mappings().one())


def consents(rt: Runtime) -> dict[tuple[int, str], tuple[bool, str]]:
    with rt.engine.connect() as conn:
        rows = conn.execute(select(CS.c.customer_id, CS.c.channel, CS.c.allowed, CS.c.source))
        return {(r.customer_id, r.channel): (r.allowed, r.source) for r in rows}


def status_params(sid: str, status: str, code: str | None = None) -> dict[str, str]:
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC123"}
    return params | ({"ErrorCode": code} if code else {})


# ---- status callbacks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "before", "reported", "code", "after", "after_code"),
    [
        ("sent becomes delivered", "sent", "delivered", None, "delivered", None),
        (
            "undelivered keeps the carrier code",
            "sent",
            "undelivered",
            "30003",
            "undelivered",
            "30003",
        ),
        ("failed keeps the code", "sent", "failed", "30008", "failed", "30008"),
        ("a late sent never undoes delivered", "delivered", "sent", None, "delivered", None),
        ("queued never undoes sent", "sent", "queued", None, "sent", None),
        ("accepted never undoes sent", "sent", "accepted", None, "sent", None),
        (
            "a late delivered leaves a final failure",
            "undelivered",
            "delivered",
            None,
            "undelivered",
            None,
        ),
        ("a repeated delivered is harmless", "delivered", "delivered", None, "delivered", None),
        ("sent settles an unknown row", "unknown", "sent", None, "sent", None),
        ("an unheard-of status changes nothing", "sent", "read", None, "sent", None),
    ],
)
def test_status_callbacks_only_move_a_delivery_forward(
    client: TestClient,
    api_runtime: Runtime,
    case: str,
    before: str,
    reported: str,
    code: str | None,
    after: str,
    after_code: str | None,
) -> None:
    delivery_id = add_delivery(api_runtime, before, "SM0001")
    response = twilio_post(client, "/twilio/status", status_params("SM0001", reported, code))
    assert response.status_code == 200, case
    row = delivery(api_runtime, delivery_id)
    assert (row["status"], row["error_code"]) == (after, after_code), case
    if after_code:
        assert after_code in row["reason"], case


def test_a_status_for_an_unknown_sid_is_a_harmless_200(
    client: TestClient, api_runtime: Runtime
) -> None:
    delivery_id = add_delivery(api_runtime, "sent", "SM0001")
    before = delivery(api_runtime, delivery_id)
    response = twilio_post(client, "/twilio/status", status_params("SMnobody", "delivered"))
    assert response.status_code == 200
    assert delivery(api_runtime, delivery_id) == before


def test_a_status_never_touches_an_email_with_the_same_provider_id(
    client: TestClient, api_runtime: Runtime
) -> None:
    delivery_id = add_delivery(api_runtime, "sent", "SM0001", channel="email")
    twilio_post(client, "/twilio/status", status_params("SM0001", "failed", "30008"))
    assert delivery(api_runtime, delivery_id)["status"] == "sent"


def test_a_failure_because_the_recipient_unsubscribed_records_the_opt_out(
    client: TestClient, api_runtime: Runtime
) -> None:
    add_delivery(api_runtime, "sent", "SM0001")
    twilio_post(client, "/twilio/status", status_params("SM0001", "failed", "21610"))
    assert consents(api_runtime) == {(1, "sms"): (False, "twilio-21610")}


# A status callback's URL names its delivery (channels.sms): Twilio may call back before the
# worker has recorded the SID, or after a worker died without recording it.
NAMED = [
    # case, status before, SID before, reported (code), status after, SID after
    ("an early delivered", "sending", None, "delivered", None, "delivered", "SM0001"),
    ("an early failure", "sending", None, "failed", "30008", "failed", "SM0001"),
    ("sent resolves a dead worker's unknown", "unknown", None, "sent", None, "sent", "SM0001"),
    ("delivered resolves it", "unknown", None, "delivered", None, "delivered", "SM0001"),
    ("the row's own SID", "sent", "SM0001", "delivered", None, "delivered", "SM0001"),
    ("another SID: untouched", "sent", "SM0999", "failed", "30008", "sent", "SM0999"),
    ("unknown, another SID: untouched", "unknown", "SM0999", "sent", None, "unknown", "SM0999"),
    ("a row not yet sent: untouched", "pending", None, "delivered", None, "pending", None),
    ("never backwards", "delivered", None, "sent", None, "delivered", None),
]


@pytest.mark.parametrize(("case", "before", "sid", "reported", "code", "after", "after_sid"), NAMED)
def test_a_callback_naming_its_delivery_finds_the_row_without_a_sid(
    client: TestClient,
    api_runtime: Runtime,
    case: str,
    before: str,
    sid: str | None,
    reported: str,
    code: str | None,
    after: str,
    after_sid: str | None,
) -> None:
    delivery_id = add_delivery(api_runtime, before, sid)
    path = f"/twilio/status?delivery={delivery_id}"
    response = twilio_post(client, path, status_params("SM0001", reported, code))
    assert response.status_code == 200, case
    row = delivery(api_runtime, delivery_id)
    assert (row["status"], row["provider_id"]) == (after, after_sid), case
    assert row["error_code"] == (code if after == reported else None), case
    if after == "sent":
        assert row["reason"] is None, case  # the dead worker's reason no longer applies


def test_a_callback_naming_an_email_delivery_changes_nothing(
    client: TestClient, api_runtime: Runtime
) -> None:
    delivery_id = add_delivery(api_runtime, "unknown", None, channel="email")
    before = delivery(api_runtime, delivery_id)
    path = f"/twilio/status?delivery={delivery_id}"
    twilio_post(client, path, status_params("SM0001", "delivered"))
    assert delivery(api_runtime, delivery_id) == before


def test_an_early_unsubscribed_failure_named_by_delivery_records_the_opt_out(
    client: TestClient, api_runtime: Runtime
) -> None:
    delivery_id = add_delivery(api_runtime, "sending", None)
    path = f"/twilio/status?delivery={delivery_id}"
    twilio_post(client, path, status_params("SM0001", "failed", "21610"))
    assert delivery(api_runtime, delivery_id)["status"] == "failed"
    assert consents(api_runtime) == {(1, "sms"): (False, "twilio-21610")}


@pytest.mark.parametrize(
    ("case", "signed", "sent"),
    [
        ("another delivery id", "?delivery={other}", "?delivery={mine}"),
        ("signed without the query", "", "?delivery={mine}"),
        ("signed with the query, sent without", "?delivery={mine}", ""),
        ("an id added", "?delivery={mine}", "?delivery={mine}&delivery={other}"),
    ],
)
def test_a_callback_whose_url_was_changed_gets_403_and_changes_nothing(
    client: TestClient, api_runtime: Runtime, case: str, signed: str, sent: str
) -> None:
    mine, other = (
        add_delivery(api_runtime, "unknown", None),
        add_delivery(api_runtime, "unknown", None),
    )
    before = [delivery(api_runtime, mine), delivery(api_runtime, other)]
    params = status_params("SM0001", "delivered")
    url = BASE + "/twilio/status" + signed.format(mine=mine, other=other)
    path = "/twilio/status" + sent.format(mine=mine, other=other)
    response = client.post(path, data=params, headers={"X-Twilio-Signature": sign(url, params)})
    assert response.status_code == 403, case
    assert [delivery(api_runtime, mine), delivery(api_runtime, other)] == before, case


@pytest.mark.parametrize("value", ["x", "0", "-1", str(2**31)])
def test_a_signed_callback_with_a_delivery_that_is_no_row_id_changes_nothing(
    client: TestClient, api_runtime: Runtime, value: str
) -> None:
    delivery_id = add_delivery(api_runtime, "unknown", None)
    before = delivery(api_runtime, delivery_id)
    response = twilio_post(
        client, f"/twilio/status?delivery={value}", status_params("SM0001", "delivered")
    )
    assert response.status_code == 422
    assert delivery(api_runtime, delivery_id) == before


# ---- inbound SMS ------------------------------------------------------------------------------


def inbound(body: str, sender: str = PHONE) -> dict[str, str]:
    return {"MessageSid": "SMin", "From": sender, "To": "+8610690000", "Body": body}


def test_stop_texted_between_match_and_send_keeps_the_matched_message_from_going(
    client: TestClient, api_runtime: Runtime
) -> None:
    from crm.models import OutboxMessage
    from worker.deliver import deliver

    matched = add_delivery(api_runtime, "pending", None)  # the sweep matched customer 1

    assert twilio_post(client, "/twilio/inbound", inbound("退订")).status_code == 200
    outcome = deliver(api_runtime, matched, NOW)

    assert outcome.status == "suppressed"
    assert (delivery(api_runtime, matched)["reason"] or "").startswith("no_consent")
    with api_runtime.engine.connect() as conn:
        assert conn.execute(select(table(OutboxMessage))).all() == []  # nothing went anywhere


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        " stop\n",
        "StopAll",
        "UNSUBSCRIBE",
        "cancel",
        "END",
        "quit",
        "退订",
        "TD",
        "td",
        "ＳＴＯＰ",
    ],
)
def test_an_opt_out_keyword_stops_sms_for_everyone_on_that_phone(
    client: TestClient, api_runtime: Runtime, body: str
) -> None:
    response = twilio_post(client, "/twilio/inbound", inbound(body))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert re.fullmatch(r"<\?xml[^>]*\?>\s*<Response>\s*</Response>", response.text)
    stopped = (False, "sms-stop")
    assert consents(api_runtime) == {(1, "sms"): stopped, (2, "sms"): stopped}


@pytest.mark.parametrize("body", ["START", "unstop", "Yes"])
def test_start_opts_back_in(client: TestClient, api_runtime: Runtime, body: str) -> None:
    twilio_post(client, "/twilio/inbound", inbound("STOP"))
    twilio_post(client, "/twilio/inbound", inbound(body))
    started = (True, "sms-start")
    assert consents(api_runtime) == {(1, "sms"): started, (2, "sms"): started}


def test_twilio_advanced_opt_out_type_is_honoured(client: TestClient, api_runtime: Runtime) -> None:
    twilio_post(
        client, "/twilio/inbound", inbound("不要再发了", OTHER_PHONE) | {"OptOutType": "STOP"}
    )
    assert consents(api_runtime) == {(3, "sms"): (False, "sms-stop")}


@pytest.mark.parametrize(
    ("case", "body", "sender"),
    [
        ("ordinary text", "When is my car ready?", PHONE),
        ("stop inside a sentence", "please stop", PHONE),
        ("an unknown number", "STOP", "+8613700000000"),
        ("no sender", "STOP", ""),
    ],
)
def test_other_inbound_messages_change_no_consent(
    client: TestClient, api_runtime: Runtime, case: str, body: str, sender: str
) -> None:
    response = twilio_post(client, "/twilio/inbound", inbound(body, sender))
    assert response.status_code == 200, case
    assert consents(api_runtime) == {}, case


# ---- signatures -------------------------------------------------------------------------------


def forged(
    base: str = BASE,
    extra: dict[str, str] | None = None,
    token: str = AUTH_TOKEN,
    literal: str = "",
) -> Callable[[str, dict[str, str]], dict[str, str]]:
    """Headers for a request that is not what Twilio signed for our public URL."""

    def headers(path: str, params: dict[str, str]) -> dict[str, str]:
        if literal:
            return {"X-Twilio-Signature": literal}
        return {"X-Twilio-Signature": sign(base + path, params | (extra or {}), token)}

    return headers


FORGERIES = [
    ("unsigned", lambda path, params: {}),
    ("an empty signature", lambda path, params: {"X-Twilio-Signature": ""}),
    ("garbage signature", forged(literal="bm90IGEgc2lnbmF0dXJl")),
    ("signed with another token", forged(token="another-token")),
    ("signed for other parameters", forged(extra={"Body": "hi", "MessageStatus": "queued"})),
    ("signed for another URL", forged(base="https://evil.example")),
    ("signed for the internal URL, not the public one", forged(base="http://testserver")),
]
WEBHOOKS = [
    ("/twilio/status", status_params("SM0001", "failed", "21610")),
    ("/twilio/inbound", inbound("STOP")),
]


@pytest.mark.parametrize(("path", "params"), WEBHOOKS)
@pytest.mark.parametrize(("case", "headers"), FORGERIES)
def test_forged_and_unsigned_requests_get_403_and_change_nothing(
    client: TestClient,
    api_runtime: Runtime,
    path: str,
    params: dict[str, str],
    case: str,
    headers: Any,
) -> None:
    delivery_id = add_delivery(api_runtime, "sent", "SM0001")
    before = delivery(api_runtime, delivery_id)
    response = client.post(path, data=params, headers=headers(path, params))
    assert response.status_code == 403, case
    assert delivery(api_runtime, delivery_id) == before, case
    assert consents(api_runtime) == {}, case


@pytest.mark.parametrize(("path", "params"), WEBHOOKS)
def test_without_an_auth_token_twilio_webhooks_answer_503_and_change_nothing(
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    path: str,
    params: dict[str, str],
) -> None:
    monkeypatch.delenv("MILEPOST_TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("MILEPOST_PUBLIC_BASE_URL", BASE)
    rt: Runtime = request.getfixturevalue("runtime")
    with rt.engine.begin() as conn:
        conn.execute(insert(C), {"id": 1, "code": "C1", "name": "王伟", "phone": PHONE})
    with TestClient(create_app(rt)) as unconfigured:
        response = unconfigured.post(
            path, data=params, headers={"X-Twilio-Signature": sign(BASE + path, params)}
        )
    assert response.status_code == 503
    assert "MILEPOST_TWILIO_AUTH_TOKEN" in response.text
    assert consents(rt) == {}


def test_without_a_public_base_url_the_request_url_is_what_twilio_signed(
    monkeypatch: pytest.MonkeyPatch, api_runtime: Runtime
) -> None:
    settings = api_runtime.settings.model_copy(update={"public_base_url": None})
    rt = Runtime(settings)
    with TestClient(create_app(rt), base_url="https://tunnel.example.net") as direct:
        params = inbound("TD")
        url = "https://tunnel.example.net/twilio/inbound"
        response = direct.post(
            "/twilio/inbound", data=params, headers={"X-Twilio-Signature": sign(url, params)}
        )
    assert response.status_code == 200
    assert consents(api_runtime)[(1, "sms")] == (False, "sms-stop")


# ---- unsubscribe links ------------------------------------------------------------------------


def test_the_unsubscribe_link_shows_a_bilingual_page_and_changes_nothing(
    client: TestClient, api_runtime: Runtime
) -> None:
    response = client.get(f"/unsubscribe/{make_token(SECRET, 1, 'email')}")
    assert response.status_code == 200
    assert "退订" in response.text and "Unsubscribe" in response.text
    assert re.search(r'<form method="post">', response.text)
    assert response.headers["cache-control"] == "no-store"
    assert consents(api_runtime) == {}


def test_confirming_opts_the_customer_out_of_the_tokens_channel(
    client: TestClient, api_runtime: Runtime
) -> None:
    response = client.post(f"/unsubscribe/{make_token(SECRET, 1, 'email')}")
    assert response.status_code == 200
    assert "您已退订" in response.text
    assert consents(api_runtime) == {(1, "email"): (False, "unsubscribe-link")}


def test_the_email_channels_one_click_header_unsubscribes(
    client: TestClient, api_runtime: Runtime
) -> None:
    email = SMTPEmailChannel(
        SMTPServer("127.0.0.1", 25, "starttls"),
        sender="Dealer <care@example.com>",
        secret_key=SECRET,
        public_base_url=BASE,
    )
    message = Message(1, "email", "w@example.cn", "您好", 1, "birthday", 50, subject="生日快乐")
    mail = email.compose(message)
    url = mail["List-Unsubscribe"].strip("<>")
    assert url.startswith(BASE + "/unsubscribe/")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    response = client.post(
        url.removeprefix(BASE),
        content=mail["List-Unsubscribe-Post"],
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert consents(api_runtime) == {(1, "email"): (False, "unsubscribe-link")}


def _tampered() -> list[tuple[str, str]]:
    good = make_token(SECRET, 1, "email")
    payload, signature = good.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    other_payload = make_token(SECRET, 2, "email").split(".")[0]
    return [
        ("a changed signature", f"{payload}.{flipped}"),
        ("another customer's payload", f"{other_payload}.{signature}"),
        ("cut short", good[: len(good) // 2]),
        ("signed with another key", make_token("another-key", 1, "email")),
        ("not a token at all", "hello"),
        ("a channel without consent", make_token(SECRET, 1, "fax")),
    ]


@pytest.mark.parametrize(("case", "token"), _tampered())
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_bad_unsubscribe_token_is_a_400_page_and_changes_nothing(
    client: TestClient, api_runtime: Runtime, method: str, case: str, token: str
) -> None:
    response = client.request(method, f"/unsubscribe/{token}")
    assert response.status_code == 400, case
    assert "链接无效" in response.text and "not valid" in response.text, case
    assert consents(api_runtime) == {}, case


def test_unsubscribing_a_customer_that_is_gone_is_a_quiet_success(
    client: TestClient, api_runtime: Runtime
) -> None:
    response = client.post(f"/unsubscribe/{make_token(SECRET, 99, 'email')}")
    assert response.status_code == 200
    assert consents(api_runtime) == {}


# ---- consent writes and health ----------------------------------------------------------------


@pytest.mark.parametrize("database", ["db_url", pytest.param("pg_url", marks=pytest.mark.postgres)])
def test_the_newest_consent_decision_wins(request: pytest.FixtureRequest, database: str) -> None:
    engine = get_engine(request.getfixturevalue(database))

    def write(allowed: bool, source: str, at: datetime) -> bool:
        with engine.begin() as conn:
            return set_consent(conn, 1, "sms", allowed, source, at)

    def stored() -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(CS.c.allowed, CS.c.source))]

    with engine.begin() as conn:
        conn.execute(insert(C), {"id": 1, "code": "C1", "name": "王伟", "phone": PHONE})
    assert write(False, "sms-stop", NOW)
    assert not write(True, "import", NOW - timedelta(days=300))  # stale DMS data loses
    assert stored() == [(False, "sms-stop")]
    assert write(True, "sms-start", NOW + timedelta(minutes=1))
    assert stored() == [(True, "sms-start")]
    with engine.begin() as conn, pytest.raises(ValueError, match="unknown consent channel"):
        set_consent(conn, 1, "fax", False, "test", NOW)


def test_an_app_built_without_a_runtime_uses_the_process_runtime(runtime: Runtime) -> None:
    with TestClient(create_app()) as test_client:
        assert test_client.get("/health").status_code == 200


def test_health_is_ok_when_the_database_answers(client: TestClient) -> None:
    response = client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_health_is_503_when_the_database_does_not_answer(tmp_path: Any) -> None:
    broken = Runtime(Settings(database_url=f"sqlite:///{tmp_path}/missing/dir/milepost.db"))
    with TestClient(create_app(broken)) as test_client:
        response = test_client.get("/health")
    assert response.status_code == 503
