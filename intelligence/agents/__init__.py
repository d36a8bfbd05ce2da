"""Decision agents: one small class per family behind one interface, registered by name.

Importing this package registers every agent (each module's ``@register``), so
``REGISTRY`` is complete for whoever imports ``intelligence.agents``.
"""

from __future__ import annotations

from intelligence.agents import (  # noqa: F401  (registration side effects)
    cost,
    fundamental,
    mean_reversion,
    ml,
    pattern,
    portfolio,
    regime,
    risk,
    rl,
    sentiment,
    sizing,
    technical,
    trend,
)
from intelligence.agents.base import (
    ACTIONS,
    REGISTRY,
    Agent,
    Context,
    Vote,
    agents_for_plan,
    build_agents,
    register,
)
from intelligence.agents.features import AGENT_FEATURE_SPEC, agent_feature_spec
from intelligence.agents.portfolio import allocate, inverse_volatility, mean_variance, risk_parity
from intelligence.agents.sentiment import score_headline, score_headlines
from intelligence.agents.sizing import capped_kelly

__all__ = [
    "ACTIONS",
    "AGENT_FEATURE_SPEC",
    "REGISTRY",
    "Agent",
    "Context",
    "Vote",
    "agent_feature_spec",
    "agents_for_plan",
    "allocate",
    "build_agents",
    "capped_kelly",
    "inverse_volatility",
    "mean_variance",
    "register",
    "risk_parity",
    "score_headline",
    "score_headlines",
]
