"""Representative facts for rendering a template before any customer exists (length checks).

Text facts are on the long side of real data, so an SMS that fits here fits in practice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rules.catalog import CATALOG

DEFAULT_DEALER = {"name": "Milepost Motors", "phone": "400-800-1234"}

_BY_TYPE: dict[str, Any] = {"int": 30, "float": 42.5, "bool": True}
_VALUES: dict[str, Any] = {
    "customer.tier": "gold",
    "customer.tier_rank": 2,
    "customer.points_redeemable": 12800,
    "customer.points_cumulative": 26500,
    "customer.max_repair_amount": 5600.0,
    "customer.last_satisfaction": 5,
    "vehicle.age_days": 1095,
    "vehicle.hours_since_delivery": 26280,
    "vehicle.model_year": 2022,
    "vehicle.odometer_km": 12500,
    "vehicle.projected_km": 14800,
    "vehicle.km_since_last_service": 4800,
    "vehicle.warranty_km_left": 45200,
    "vehicle.vin": "LVGBE40K8GP123456",
    "vehicle.vin_tail": "123456",
    "vehicle.make": "Volkswagen",
    "vehicle.model": "Magotan 380TSI",
    "today.weekday": 3,
    "today.month": 2,
    "today.day": 17,
    "today.holiday": "spring-festival",
}
_TEXT_BY_LANGUAGE: dict[str, dict[str, str]] = {
    "zh": {"customer.name": "欧阳明华", "customer.title": "欧阳先生"},
    "en": {"customer.name": "Alexandra Montgomery", "customer.title": "Ms Montgomery"},
}


def sample_context(language: str, dealer: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every catalog fact with a plausible value, nested by scope, in ``language``."""
    context: dict[str, dict[str, Any]] = {}
    by_language = _TEXT_BY_LANGUAGE.get(language, _TEXT_BY_LANGUAGE["en"])
    for fact in CATALOG.values():
        if fact.scope == "dealer":
            continue
        if fact.name in by_language:
            value = by_language[fact.name]
        elif fact.name in _VALUES:
            value = _VALUES[fact.name]
        elif fact.type == "enum":
            value = fact.values[0] if fact.values else "none"
        else:
            value = _BY_TYPE.get(fact.type, fact.key)
        context.setdefault(fact.scope, {})[fact.key] = value
    context["customer"]["language"] = language
    context["dealer"] = dict(dealer or DEFAULT_DEALER)
    return context
