"""The chaos benchmark's core, small: workers SIGKILLed mid-send send nothing twice, lose nothing.

bench/chaos.py at 300 deliveries, without its Redis and PostgreSQL restarts (those are the
shared servers: only the benchmark itself restarts them). The fake Twilio answers slowly so
the work outlasts a couple of kills, and the scheduler's waits are seconds, not minutes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import chaos


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(120)
def test_workers_killed_mid_send_duplicate_nothing_and_lose_no_row(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    opts = chaos.Options(
        deliveries=300,
        threads=2,
        kill_every_s=2,
        max_kills=2,
        restarts=False,
        latency_ms=30,
        tick_s=0.5,
        requeue_quiet_s=3,
        stale_sending_s=3,
        provider_timeout_s=2,
        timeout_s=60,
        batch=100,
        backlog=200,
        report_every_s=5,
        logs=tmp_path,
    )

    result = chaos.run(opts, pg_url, redis_url)

    assert result.kills == 2, "the work should have outlasted both kills"
    assert result.duplicates == 0
    assert result.lost == 0
    assert result.sent_unseen == result.unexpected == 0
    assert result.count("unknown") <= result.unknown_limit
    # The faults: 3 invalid or opted-out numbers fail, 3 customers without a phone are
    # suppressed, unless a kill left one of them `unknown`.
    assert result.count("suppressed") == 3
    assert result.count("failed") + result.count("unknown") >= 6
