"""Quiet hours defer a message to the next window start in the customer's time zone."""

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from worker.policies import cap, in_window, next_window_start

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
DAY = (time(9), time(20))
NIGHT_SHIFT = (time(22), time(6))  # a window that crosses midnight


@pytest.mark.parametrize(
    ("utc", "tz", "window", "opens"),
    [
        # 08:30 in Shanghai: waits until 09:00 the same day
        ("2026-11-22T00:30:00", SHANGHAI, DAY, "2026-11-22T09:00:00+08:00"),
        # 12:00 in Shanghai: inside, sends now
        ("2026-11-22T04:00:00", SHANGHAI, DAY, None),
        # 21:00 in Shanghai: the next morning
        ("2026-11-22T13:00:00", SHANGHAI, DAY, "2026-11-23T09:00:00+08:00"),
        # the same instant is 14:00 in Berlin: inside there
        ("2026-11-22T13:00:00", BERLIN, DAY, None),
        # 20:00 sharp is outside [09:00, 20:00)
        ("2026-11-22T12:00:00", SHANGHAI, DAY, "2026-11-23T09:00:00+08:00"),
        # midnight-crossing window: 23:00 and 05:00 inside, 12:00 outside until 22:00
        ("2026-11-22T15:00:00", SHANGHAI, NIGHT_SHIFT, None),
        ("2026-11-21T21:00:00", SHANGHAI, NIGHT_SHIFT, None),
        ("2026-11-22T04:00:00", SHANGHAI, NIGHT_SHIFT, "2026-11-22T22:00:00+08:00"),
        # Berlin's DST ends 2026-10-25: 08:00 local is 07:00 UTC after it
        ("2026-10-25T06:30:00", BERLIN, DAY, "2026-10-25T09:00:00+01:00"),
    ],
)
def test_next_window_start(utc: str, tz: ZoneInfo, window: tuple[time, time], opens: str | None):
    now = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    got = next_window_start(now, tz, *window)
    if opens is None:
        assert got is None
    else:
        assert got == datetime.fromisoformat(opens)
        assert got > now


def test_window_edges():
    assert in_window(time(9), *DAY)
    assert not in_window(time(8, 59), *DAY)
    assert in_window(time(0), *NIGHT_SHIFT)
    assert not in_window(time(6), *NIGHT_SHIFT)


def test_cap_spec():
    assert cap("2/7d") == (2, 7)
    assert cap("5/30d") == (5, 30)
