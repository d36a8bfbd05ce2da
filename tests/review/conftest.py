"""Decisions written straight into a tenant's schema, and the indexer run past its settling lag."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from intelligence.models import Decision
from review.services import review_index

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def risk_vote(*, veto: bool = False, sides=None, action: str = "HOLD") -> dict:
    details = {"breaches": ["drawdown 20% > 15%"] if veto else []}
    if sides is not None:
        details["veto_sides"] = sides
    return {"agent": "risk", "action": action, "confidence": 1.0 if veto else 0.0, "reason": "r",
            "details": details, "veto": veto, "size_cap": None if veto else 0.25}  # fmt: skip


def trend_vote(action: str = "BUY", confidence: float = 0.8) -> dict:
    return {"agent": "trend", "action": action, "confidence": confidence, "reason": "ema cross", "details": {},
            "veto": False, "size_cap": None}  # fmt: skip


def decide(tenant, n: int = 1, **fields) -> list[Decision]:
    """``n`` decisions in ``tenant``'s schema (bar times a minute apart after T0)."""
    base = {"source": "api", "symbol": "BTCUSDT", "timeframe": "1m", "action": "HOLD", "confidence": 0.7,
            "size": 0.0, "votes": [trend_vote(), risk_vote()], "weights": {"trend": 0.6, "risk": 0.4},
            "explanation": "BUY: trend 0.80", "flow": "default@1", "model_version": "xgb@3"}  # fmt: skip
    offset = fields.pop("offset", 0)
    with schema_context(tenant.schema_name):
        return Decision.objects.bulk_create(
            [Decision(**{**base, "ts": T0 + dt.timedelta(minutes=offset + i), **fields}) for i in range(n)]
        )


def index(tenant, **kw) -> int:
    """The indexer as the tick runs it, past the settling lag of the decisions just written."""
    kw.setdefault("now", timezone.now() + dt.timedelta(minutes=5))
    with schema_context(tenant.schema_name):
        return review_index(tenant=tenant, **kw)


@pytest.fixture
def a(alpha):
    return alpha.tenant


@pytest.fixture
def b(beta):
    return beta.tenant
