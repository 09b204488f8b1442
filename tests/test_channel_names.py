"""Every place that names the channels names the same ones (CONTRIBUTING's recipe)."""

from __future__ import annotations

from channels.registry import ADAPTERS
from crm.consent import CHANNELS as CONSENTS
from rules.catalog import CATALOG
from rules.model import CHANNELS
from worker.policies import ADDRESS, CAPPED_CHANNELS


def test_campaigns_adapters_consents_and_addresses_know_the_same_channels():
    assert set(ADAPTERS) == set(CHANNELS) == set(CONSENTS) == set(ADDRESS)
    assert set(CAPPED_CHANNELS) <= set(CHANNELS)
    assert {f"customer.consent_{channel}" for channel in CHANNELS} <= set(CATALOG)
