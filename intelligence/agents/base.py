"""The agent interface: every agent turns one :class:`Context` into one :class:`Vote`.

Agents are small on purpose. A decision runs every agent of a flow on every bar, with a budget of
about a millisecond for all of them together, so an agent never recomputes an indicator over
history: it reads the latest feature vector (``Context.features``, computed once per bar by the
feature engine from :data:`intelligence.agents.features.AGENT_FEATURE_SPEC`) and at most a few
recent closes. Each agent declares the columns it reads (``required_features``) so a flow can be
checked against the feature set before it runs, and a missing or warming-up column makes the agent
abstain instead of guessing.

Two kinds of agent share the interface:

- directional agents (``directional = True``) vote BUY / SELL / HOLD with a confidence, and the
  consensus engine weighs them by their track record;
- advisory agents (risk, sizing, cost, regime, portfolio) always vote HOLD and speak through
  ``veto``, ``size_cap`` and ``details`` (a regime's ``details["scale"]``, the cost agent's
  break-even probability). They are never counted for or against a direction, which would let a
  risk check masquerade as a market view.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import orjson

from api.errors import ApplicationError

ACTIONS = ("BUY", "SELL", "HOLD")
DIRECTION = {"BUY": 1, "SELL": -1, "HOLD": 0}
TIERS = ("basic", "advanced")


@dataclass(frozen=True, slots=True)
class Vote:
    """One agent's opinion on one bar.

    ``confidence`` is the agent's own strength of conviction in [0, 1], not a probability: the
    consensus engine learns how much each agent's confidence is worth and calibrates the result.
    ``veto`` blocks a trade (``details["veto_sides"]`` may narrow it to the sides that add risk);
    ``size_cap`` bounds the position size as a fraction of equity."""

    action: str
    confidence: float
    reason: str
    details: dict = field(default_factory=dict)
    veto: bool = False
    size_cap: float | None = None

    def __post_init__(self) -> None:
        # agent code builds votes, so a bad one is a programming error, not a user error
        if self.action not in DIRECTION:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence!r}")
        if self.size_cap is not None and self.size_cap < 0:
            raise ValueError(f"size_cap must be >= 0, got {self.size_cap!r}")

    @property
    def direction(self) -> int:
        return DIRECTION[self.action]

    @property
    def abstained(self) -> bool:
        """An abstention (missing data, nothing to say) is not a HOLD opinion and is not scored."""
        return bool(self.details.get("abstain"))

    def to_json(self) -> dict:
        return _jsonable(self.as_dict())

    def as_dict(self) -> dict:
        """:meth:`to_json` before its details are made plain JSON (a caller encoding many votes
        converts them all in one pass)."""
        return {
            "action": self.action,
            "confidence": round(self.confidence, 6),
            "reason": self.reason,
            "details": self.details,
            "veto": self.veto,
            "size_cap": self.size_cap,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Vote:
        return cls(
            action=data["action"],
            confidence=float(data["confidence"]),
            reason=str(data.get("reason", "")),
            details=dict(data.get("details") or {}),
            veto=bool(data.get("veto", False)),
            size_cap=None if data.get("size_cap") is None else float(data["size_cap"]),
        )


def hold(reason: str, confidence: float = 0.0, **details: Any) -> Vote:
    return Vote("HOLD", confidence, reason, details)


def abstain(reason: str, **details: Any) -> Vote:
    return Vote("HOLD", 0.0, reason, {"abstain": True, **details})


def directional_vote(score: float, threshold: float, reason: str, details: dict, max_confidence: float = 1.0) -> Vote:
    """BUY / SELL when ``|score|`` (in [-1, 1]) clears ``threshold``, else HOLD; confidence ``|score|``."""
    conf = min(max_confidence, abs(score))
    if score >= threshold:
        return Vote("BUY", conf, reason, details)
    if score <= -threshold:
        return Vote("SELL", conf, reason, details)
    return Vote("HOLD", conf, reason, details)


@dataclass(slots=True)
class Context:
    """Everything an agent may read for one decision; built once per bar and shared by all agents.

    ``features`` is the latest feature row (column -> float, NaN while warming up); ``closes`` the
    recent closes, newest last (a few hundred at most). Tenant inputs (``sentiment``, ``headlines``,
    ``fundamentals``, ``pair``) are optional: an agent whose input is absent abstains. ``settings``
    dicts are treated as values (agents cache their merge per object): build new ones to change them."""

    symbol: str
    timeframe: str
    ts: Any
    features: dict[str, float]
    closes: np.ndarray
    ml: dict | None = None
    rl: dict | None = None  # the deployed RL policy: {"policy", "version", "no_edge", "features"}
    sentiment: float | None = None
    headlines: list[str] | None = None
    fundamentals: dict | None = None
    position: dict = field(default_factory=dict)  # qty, avg_price, unrealised_pnl, exposure, drawdown
    pair: dict | None = None
    settings: dict[str, dict] = field(default_factory=dict)  # agent name -> setting overrides
    spread_bps: float | None = None

    @property
    def close(self) -> float:
        return float(self.closes[-1]) if len(self.closes) else math.nan


class Agent:
    """Base class: subclasses set the class attributes and implement :meth:`vote`.

    ``default_settings`` lists every setting an agent takes, with its default; a flow (or a
    context) may override some. Unknown settings are refused when the agent is built, so a typo in
    a tenant's flow fails loudly instead of silently keeping the default."""

    name: ClassVar[str] = ""
    tier: ClassVar[str] = "advanced"
    directional: ClassVar[bool] = True
    required_features: ClassVar[tuple[str, ...]] = ()
    default_settings: ClassVar[dict[str, Any]] = {}
    summary: ClassVar[str] = ""

    def __init__(self, settings: Mapping[str, Any] | None = None):
        self.settings = self.clean_settings(settings)
        self._override: tuple[Any, dict[str, Any]] | None = None  # (ctx override object, merged settings)

    @classmethod
    def clean_settings(cls, settings: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults with ``settings`` applied."""
        return {**cls.default_settings, **cls.check_settings(settings)}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any] | None) -> dict[str, Any]:
        """Only the given settings, validated against the defaults' names and types."""
        out: dict[str, Any] = {}
        for key, value in (settings or {}).items():
            if key not in cls.default_settings:
                raise ApplicationError(
                    "invalid_agent_settings",
                    f"Agent {cls.name!r} has no setting {key!r}; it takes {', '.join(cls.default_settings) or 'none'}.",
                    {"agent": cls.name, "setting": key},
                )
            default = cls.default_settings[key]
            if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, int | float)
                and not isinstance(default, bool)
                and (not isinstance(value, int | float) or not math.isfinite(value))
            ):
                raise ApplicationError(
                    "invalid_agent_settings",
                    f"Setting {cls.name}.{key} must be like {default!r}, got {value!r}.",
                    {"agent": cls.name, "setting": key},
                )
            out[key] = value
        return out

    def params(self, ctx: Context) -> dict[str, Any]:
        """Settings for this decision: the agent's own, overridden by ``ctx.settings[name]``."""
        override = ctx.settings.get(self.name)
        if not override:
            return self.settings
        cached = self._override
        if cached is not None and cached[0] is override:  # the same settings object, bar after bar
            return cached[1]
        merged = {**self.settings, **self.check_settings(override)}
        self._override = (override, merged)
        return merged

    def missing(self, ctx: Context) -> list[str]:
        """Required columns absent or NaN (warm-up); empty when the agent can vote."""
        f = ctx.features
        out = None
        for col in self.required_features:
            x = f.get(col)
            if x is None or x != x:
                if out is None:
                    out = []
                out.append(col)
        return out or []

    def vote(self, ctx: Context) -> Vote:
        raise NotImplementedError

    @classmethod
    def describe(cls) -> dict:
        return {
            "name": cls.name,
            "tier": cls.tier,
            "directional": cls.directional,
            "summary": cls.summary,
            "required_features": list(cls.required_features),
            "default_settings": dict(cls.default_settings),
        }


class FeatureAgent(Agent):
    """An agent that reads its ``required_features`` and nothing can replace: it abstains while
    any of them is missing or warming up, else :meth:`decide` votes from the row and this
    decision's settings."""

    def vote(self, ctx: Context) -> Vote:
        missing = self.missing(ctx)
        if missing:
            return abstain("features warming up", missing=missing)
        return self.decide(ctx, ctx.features, self.params(ctx))

    def decide(self, ctx: Context, f: Mapping[str, float], p: dict[str, Any]) -> Vote:
        raise NotImplementedError


REGISTRY: dict[str, type[Agent]] = {}


def register(cls: type[Agent]) -> type[Agent]:
    """Class decorator: makes an agent available to flows by its ``name``."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"agent name {cls.name!r} is empty or already registered")
    if cls.tier not in TIERS:
        raise ValueError(f"agent {cls.name!r}: tier must be one of {TIERS}")
    REGISTRY[cls.name] = cls
    return cls


def agents_for_plan(allowed: str | Iterable[str]) -> list[str]:
    """Agent names a plan may use. ``allowed`` is a tier ("basic" gets the basic agents, "advanced"
    gets all) or an explicit iterable of tiers and/or agent names."""
    if isinstance(allowed, str):
        allowed = ("basic",) if allowed == "basic" else ("basic", "advanced") if allowed == "advanced" else (allowed,)
    allowed = set(allowed)
    return [name for name, cls in REGISTRY.items() if cls.tier in allowed or name in allowed]


def build_agents(names: Iterable[str], settings: Mapping[str, Mapping[str, Any]] | None = None) -> list[Agent]:
    """Instances for a flow; an unknown name is the user's mistake and is reported as such."""
    settings = settings or {}
    out = []
    for name in names:
        cls = REGISTRY.get(name)
        if cls is None:
            raise ApplicationError(
                "unknown_agent", f"Unknown agent {name!r}; choose from {', '.join(REGISTRY)}.", {"agent": name}
            )
        out.append(cls(settings.get(name)))
    return out


def clip(x: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return lo if x < lo else hi if x > hi else x


def feature(ctx: Context, col: str, default: float = math.nan) -> float:
    x = ctx.features.get(col)
    return default if x is None or x != x else float(x)


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: keys as strings, tuples as lists, numpy values as Python
    numbers, NaN and infinities as None (orjson's encoding, in C: a recursive walk in Python cost
    ~18 µs per vote, a third of a stream decision's bookkeeping)."""
    return orjson.loads(orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS))
