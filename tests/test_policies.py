"""Send-time policies, end to end: consent, quiet hours, the frequency cap, addresses, rate limits.

Each test sends through the real Twilio SDK to the fake Twilio, so "not sent" is counted at the
provider, not inferred from a status.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from dramatiq import Message
from sendkit import (
    BERLIN,
    OPEN,
    SHANGHAI,
    D,
    add_customer,
    add_delivery,
    row,
    sms_runtime,
)
from sqlalchemy import update

from channels.fakes.twilio_server import FakeTwilio
from crm.consent import set_consent
from worker import actors, ledger, scheduler
from worker.deliver import deliver
from worker.enqueue import enqueue_all
from worker.inprocess import running
from worker.runtime import Runtime
from worker.settings import SettingsError, get_settings
from worker.throttle import LocalWindow, RedisWindow

MARKETING = ["first-service", "annual-inspection", "warranty-ending", "birthday", "trade-in"]
TRANSACTIONAL = ["delivery-thank-you", "purchase-follow-up"]  # marketing: false, exempt


@pytest.fixture
def rt(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio) -> Runtime:
    return sms_runtime(monkeypatch, fake)


@pytest.fixture
def worker() -> Iterator[None]:
    actors.broker.flush_all()
    yield
    actors.broker.flush_all()


def test_stop_received_between_match_and_send_suppresses_the_message(
    rt: Runtime, fake: FakeTwilio
) -> None:
    customer = add_customer(rt)
    matched = add_delivery(rt, customer)  # the sweep matched while the customer still agreed
    with rt.engine.begin() as conn:
        set_consent(conn, customer, "sms", False, "sms-stop", OPEN - timedelta(minutes=1))

    outcome = deliver(rt, matched, OPEN)

    assert outcome.status == "suppressed"
    assert (row(rt, matched)["reason"] or "").startswith("no_consent")
    assert fake.requests == []
    with rt.engine.begin() as conn:  # START: the next message goes again
        set_consent(conn, customer, "sms", True, "sms-start", OPEN)
    assert deliver(rt, add_delivery(rt, customer, "birthday"), OPEN).status == "sent"


def waiting_for_window(rt: Runtime, fake: FakeTwilio, cases: list[tuple[int, datetime]]) -> None:
    """Each (row, window start): deferred until then, not sent a minute before, sent at it."""
    for delivery, opens in cases:
        deferred = row(rt, delivery)
        assert deferred["status"] == "deferred" and deferred["due_at"] == opens
        assert (deferred["reason"] or "").startswith("quiet_hours")
    with time_machine.travel(OPEN, tick=True) as clock, running(actors.broker, 4) as drain:
        for opens in sorted({opens for _, opens in cases}):
            rows = [delivery for delivery, at in cases if at == opens]
            sent_before = len(fake.requests)
            clock.move_to(opens - timedelta(minutes=1))
            scheduler.tick()
            drain()
            assert [row(rt, d)["status"] for d in rows] == ["deferred"] * len(rows)
            assert len(fake.requests) == sent_before
            clock.move_to(opens)
            scheduler.tick()
            drain()
            for delivery in rows:
                sent = row(rt, delivery)
                assert sent["status"] == "sent", sent
                assert opens <= sent["sent_at"] < opens + timedelta(minutes=1)


def test_a_deferred_message_goes_out_when_the_window_opens_in_the_customer_s_zone(
    rt: Runtime, fake: FakeTwilio, worker: None
) -> None:
    evening = datetime(2026, 11, 23, 13, 30, tzinfo=UTC)  # 21:30 in Shanghai, 14:30 in Berlin
    shanghai = add_delivery(rt, add_customer(rt, phone="+8613900000001", tz="Asia/Shanghai"))
    berlin = add_delivery(rt, add_customer(rt, phone="+8613900000002", tz="Europe/Berlin"))
    dealer_s = add_delivery(rt, add_customer(rt, phone="+8613900000003"))  # no zone: the dealer's

    outcomes = {d: deliver(rt, d, evening).status for d in (shanghai, berlin, dealer_s)}

    assert outcomes == {shanghai: "deferred", berlin: "sent", dealer_s: "deferred"}
    tomorrow_9 = datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI)
    waiting_for_window(rt, fake, [(shanghai, tomorrow_9), (dealer_s, tomorrow_9)])
    assert len(fake.requests) == 3


def test_a_window_crossing_midnight_defers_to_its_evening_start(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio, worker: None
) -> None:
    rt = sms_runtime(monkeypatch, fake, MILEPOST_QUIET_HOURS="22:00-06:00")
    night = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)  # 02:00 in Shanghai, 19:00 in Berlin
    shanghai = add_delivery(rt, add_customer(rt, phone="+8613900000001", tz="Asia/Shanghai"))
    berlin = add_delivery(rt, add_customer(rt, phone="+8613900000002", tz="Europe/Berlin"))

    assert deliver(rt, shanghai, night).status == "sent"  # inside, after midnight
    assert deliver(rt, berlin, night).status == "deferred"

    waiting_for_window(rt, fake, [(berlin, datetime(2026, 11, 23, 22, 0, tzinfo=BERLIN))])


def test_a_campaign_s_own_quiet_hours_override_the_default(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio, tmp_path: Path
) -> None:
    campaigns = tmp_path / "campaigns"
    shutil.copytree(Path(runtime.settings.campaigns), campaigns)
    spec = campaigns / "first-service.yaml"
    spec.write_text(
        spec.read_text().replace("priority: 70\n", 'priority: 70\nquiet_hours: "10:00-18:00"\n')
    )
    rt = sms_runtime(monkeypatch, fake, MILEPOST_CAMPAIGNS=str(campaigns))
    customer = add_customer(rt, tz="Asia/Shanghai")
    early = datetime(2026, 11, 23, 9, 30, tzinfo=SHANGHAI)  # open by default, not for this one

    birthday = add_delivery(rt, customer, "birthday", due_at=early)
    assert deliver(rt, birthday, early).status == "sent"
    reminder = add_delivery(rt, customer, due_at=early)
    assert deliver(rt, reminder, early).status == "deferred"
    assert row(rt, reminder)["due_at"] == datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)


def cap_outcome(rt: Runtime, ids: dict[str, int]) -> dict[str, tuple[str, str | None]]:
    return {campaign: (row(rt, i)["status"], row(rt, i)["reason"]) for campaign, i in ids.items()}


@pytest.mark.parametrize("order", ["lowest first", "highest first", "shuffled"])
def test_the_frequency_cap_lets_the_highest_priorities_through_in_any_order(
    rt: Runtime, fake: FakeTwilio, order: str
) -> None:
    customer = add_customer(rt)
    ids = {campaign: add_delivery(rt, customer, campaign) for campaign in MARKETING + TRANSACTIONAL}
    sequence = sorted(ids, key=lambda c: rt.campaigns[c].priority)
    if order == "highest first":
        sequence.reverse()
    elif order == "shuffled":
        random.Random(4).shuffle(sequence)

    for campaign in sequence:
        deliver(rt, ids[campaign], OPEN)

    outcome = cap_outcome(rt, ids)
    capped = ("suppressed", "frequency_cap: 2 per 7 days reached")
    assert outcome == {
        "first-service": ("sent", None),  # priority 70
        "annual-inspection": ("sent", None),  # 65
        "warranty-ending": capped,  # 55
        "birthday": capped,  # 40
        "trade-in": capped,  # 25
        "delivery-thank-you": ("sent", None),  # transactional: exempt
        "purchase-follow-up": ("sent", None),
    }
    assert len(fake.requests) == 4


def test_the_frequency_cap_holds_with_eight_workers_racing(
    rt: Runtime, fake: FakeTwilio, worker: None
) -> None:
    customers = [add_customer(rt, phone=f"+86139000000{n:02d}") for n in range(10)]
    ids = {(c, m): add_delivery(rt, c, m) for c in customers for m in MARKETING}
    order = list(ids.values())
    random.Random(7).shuffle(order)
    jobs = actors.deliver_jobs(order, batch=1)  # one row a message: every row races

    with time_machine.travel(OPEN, tick=True), running(actors.broker, 8) as drain:
        enqueue_all(actors.broker, jobs)
        drain()

    for customer in customers:
        sent = {m for (c, m), i in ids.items() if c == customer and row(rt, i)["status"] == "sent"}
        assert sent == {"first-service", "annual-inspection"}
    assert len(fake.requests) == 2 * len(customers)


@pytest.mark.parametrize(("days_ago", "go_out"), [(3, 1), (8, 2)])
def test_messages_sent_within_the_period_count_against_the_cap(
    rt: Runtime, days_ago: int, go_out: int
) -> None:
    customer = add_customer(rt)
    earlier = add_delivery(rt, customer, "win-back", due_at=OPEN - timedelta(days=days_ago))
    with rt.engine.begin() as conn:
        sent_at = OPEN - timedelta(days=days_ago)
        conn.execute(update(D).where(D.c.id == earlier).values(status="sent", sent_at=sent_at))
    ids = [add_delivery(rt, customer, campaign) for campaign in MARKETING]

    outcomes = [deliver(rt, i, OPEN).status for i in ids]

    assert outcomes.count("sent") == go_out


def test_a_message_a_dead_worker_left_unknown_counts_against_the_cap(rt: Runtime) -> None:
    # It may have reached the customer: a duplicate-looking flood is worse than a missed one.
    customer = add_customer(rt)
    earlier = add_delivery(rt, customer, "win-back", due_at=OPEN - timedelta(days=1))
    began = OPEN - timedelta(days=1)
    with rt.engine.begin() as conn:
        conn.execute(update(D).where(D.c.id == earlier).values(status="sending", updated_at=began))
        assert ledger.mark_stale_unknown(conn, OPEN, timedelta(minutes=10)) == 1
    assert row(rt, earlier)["sent_at"] == began
    ids = [add_delivery(rt, customer, campaign) for campaign in MARKETING]

    outcomes = [deliver(rt, i, OPEN).status for i in ids]

    assert outcomes.count("sent") == 1


@pytest.mark.parametrize("order", ["the unsendable e-mail first", "the low-priority SMS first"])
def test_a_message_that_can_never_go_takes_no_frequency_cap_place_in_any_order(
    rt: Runtime, order: str
) -> None:
    # The shape two sweeps on the demo dealer once disagreed on: a customer without e-mail who
    # has a membership reminder (SMS, then e-mail, both due) and a trade-in SMS below it.
    customer = add_customer(rt, email=None)
    reminder = add_delivery(rt, customer, "membership-expiry")
    unsendable = add_delivery(rt, customer, "membership-expiry", step=1)
    trade_in = add_delivery(rt, customer, "trade-in")
    sequence = [unsendable, reminder, trade_in]
    if order == "the low-priority SMS first":
        sequence.reverse()

    for delivery_id in sequence:
        deliver(rt, delivery_id, OPEN)

    assert row(rt, unsendable)["status"] == "suppressed"  # no address: it never goes
    # So it takes no place, as a message the customer opted out of takes none.
    assert [row(rt, i)["status"] for i in (reminder, trade_in)] == ["sent", "sent"]


def test_a_channel_can_have_a_cap_of_its_own(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio
) -> None:
    rt = sms_runtime(monkeypatch, fake, MILEPOST_FREQUENCY_CAP_SMS="1/7d")
    customer = add_customer(rt, email="wang.wei@example.cn")
    sms = [add_delivery(rt, customer, campaign) for campaign in MARKETING[:3]]
    email = add_delivery(rt, customer, "membership-expiry", step=1)

    outcomes = [deliver(rt, i, OPEN).status for i in [*sms, email]]

    # One SMS (its own cap, SMS only); the e-mail keeps the shared 2 per 7 days to itself.
    assert outcomes == ["sent", "suppressed", "suppressed", "sent"]


@pytest.mark.parametrize(
    ("phone", "email", "campaign", "step", "reason"),
    [
        ("+86123", None, "first-service", 0, "invalid_address: no usable phone"),
        (None, None, "first-service", 0, "invalid_address: no usable phone"),
        ("+8613812341234", "not-an-address", "membership-expiry", 1, "invalid_address"),
        ("+8613812341234", None, "membership-expiry", 1, "invalid_address: no usable email"),
    ],
)
def test_unusable_addresses_are_suppressed_with_the_reason(
    rt: Runtime,
    fake: FakeTwilio,
    phone: str | None,
    email: str | None,
    campaign: str,
    step: int,
    reason: str,
) -> None:
    delivery = add_delivery(rt, add_customer(rt, phone=phone, email=email), campaign, step=step)

    assert deliver(rt, delivery, OPEN).status == "suppressed"
    assert (row(rt, delivery)["reason"] or "").startswith(reason)
    assert fake.requests == []


def test_a_row_of_a_campaign_that_was_removed_is_suppressed(rt: Runtime) -> None:
    delivery = add_delivery(rt, add_customer(rt))
    with rt.engine.begin() as conn:  # its file deleted since the sweep matched
        conn.execute(update(D).where(D.c.id == delivery).values(campaign="retired-campaign"))

    assert deliver(rt, delivery, OPEN).status == "suppressed"
    assert (row(rt, delivery)["reason"] or "").startswith("campaign_removed")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MILEPOST_FREQUENCY_CAP", "2 a week"), ("MILEPOST_FREQUENCY_CAP_SMS", "1/0d")],
)
def test_a_bad_cap_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match=variable):
        get_settings()
    get_settings.cache_clear()


def test_the_local_window_keeps_to_its_rate_across_the_second() -> None:
    window = LocalWindow(limit=2)

    assert [window.take(100.0), window.take(100.5), window.take(100.9)] == [True, True, False]
    # Half the last second still overlaps at 101.5: one of its two counts, one slot free.
    assert [window.take(101.5), window.take(101.6)] == [True, False]


def test_processes_sharing_the_redis_window_never_exceed_its_rate(redis_url: str) -> None:
    first, second = (RedisWindow(redis_url, "test-rate", limit=100) for _ in range(2))

    granted = sum(w.take(200.25) for _ in range(150) for w in (first, second))

    assert granted == 100  # each takes slots two at a time; together exactly the limit
    assert first.take(201.99) and second.take(201.99)  # the window slid on


def test_a_throttled_message_is_not_claimed_costs_no_attempt_and_comes_back_later(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio, worker: None
) -> None:
    rt = sms_runtime(monkeypatch, fake, MILEPOST_SMS_RATE_PER_S="1")
    ids = [add_delivery(rt, add_customer(rt, phone=f"+861390000000{n}")) for n in range(3)]
    with time_machine.travel(OPEN, tick=False):
        assert deliver(rt, ids[0], OPEN).status == "sent"
        actors.deliver([ids[1]])  # over the rate: the actor sends itself again, later
        waiting = row(rt, ids[1])
        assert (waiting["status"], waiting["attempts"], waiting["reason"]) == ("pending", 0, None)
        (again,) = [Message.decode(m) for m in actors.broker.queues["deliver.DQ"].queue]
        assert again.args == ([ids[1]], 1) and again.options["eta"] > OPEN.timestamp() * 1000
    actors.broker.flush_all()

    with (
        time_machine.travel(OPEN + timedelta(seconds=5), tick=True),
        running(actors.broker) as drain,
    ):
        enqueue_all(actors.broker, actors.deliver_jobs(ids[1:]))
        drain()

    done = [row(rt, i) for i in ids]
    assert [(r["status"], r["attempts"]) for r in done] == [("sent", 1)] * 3
    assert done[2]["sent_at"] - done[1]["sent_at"] >= timedelta(seconds=0.5)
    assert len(fake.requests) == 3
