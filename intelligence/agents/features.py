"""The feature set the agents read: one spec, computed once per bar by the feature engine.

Agents never compute indicators themselves (see :mod:`intelligence.agents.base`), so every column
an agent lists in ``required_features`` must be produced here; a test checks that. The
multi-timeframe confirmation of the technical agent needs columns on a coarser timeframe, which
depends on the flow's base timeframe: :func:`agent_feature_spec` adds them when there is a coarser
timeframe to use, and the technical agent treats them as optional.
"""

from __future__ import annotations

from functools import cache

from features.spec import FeatureSpec

# base timeframe -> the coarser timeframe used for confirmation (roughly x4 to x24)
HIGHER_TIMEFRAME: dict[str, str] = {
    "1m": "15m",
    "5m": "1h",
    "15m": "4h",
    "30m": "4h",
    "1h": "1d",
    "4h": "1d",
}

CANDLES = (
    "engulfing",
    "hammer",
    "invertedhammer",
    "hangingman",
    "shootingstar",
    "morningstar",
    "eveningstar",
    "piercing",
    "darkcloudcover",
    "3whitesoldiers",
    "3blackcrows",
)

AGENT_FEATURE_SPEC_JSON: dict = {
    "features": [
        {"indicator": "rsi", "params": {"length": 14}},
        {"indicator": "macd", "params": {"fast": 12, "slow": 26, "signal": 9}},
        {"indicator": "bbands", "params": {"length": 20, "std": 2.0}, "outputs": ["percent_b", "width"]},
        {"indicator": "adx", "params": {"length": 14}, "outputs": ["adx", "plus_di", "minus_di"]},
        {"indicator": "ema", "params": {"length": 20}},
        {"indicator": "ema", "params": {"length": 50}},
        {"indicator": "sma", "params": {"length": 200}},
        {"indicator": "zscore", "params": {"length": 20}},
        {"indicator": "atr", "params": {"length": 14}},
        {"indicator": "volatility", "params": {"length": 20}},
        {"indicator": "volatility", "params": {"length": 100}},
        {"indicator": "returns", "params": {"kind": "log", "length": 1}},
        {"indicator": "returns", "params": {"kind": "log", "length": 5}},
        *({"indicator": "cdl", "params": {"pattern": p}} for p in CANDLES),
    ]
}

AGENT_FEATURE_SPEC: FeatureSpec = FeatureSpec.from_json(AGENT_FEATURE_SPEC_JSON)


def higher_timeframe_columns(timeframe: str) -> tuple[str, str] | None:
    """(RSI, MACD histogram) column names on the confirmation timeframe, or None without one."""
    return _htf_columns(timeframe)


@cache
def _htf_columns(timeframe: str) -> tuple[str, str] | None:
    htf = HIGHER_TIMEFRAME.get(timeframe)
    return None if htf is None else (f"rsi_14_{htf}", f"macd_hist_12_26_9_{htf}")


@cache
def agent_feature_spec(timeframe: str | None = None) -> FeatureSpec:
    """The agents' spec for a base timeframe, with the coarser-timeframe confirmation columns when
    the timeframe has a coarser one (1d bars have none here: the registry stops at 1d)."""
    htf = HIGHER_TIMEFRAME.get(timeframe or "")
    if htf is None:
        return AGENT_FEATURE_SPEC
    extra = [
        {"indicator": "rsi", "params": {"length": 14}, "timeframe": htf},
        {"indicator": "macd", "params": {"fast": 12, "slow": 26, "signal": 9}, "outputs": ["hist"], "timeframe": htf},
    ]
    return FeatureSpec.from_json(
        {"timeframe": timeframe, "features": [*AGENT_FEATURE_SPEC_JSON["features"], *extra]}
    ).validate(timeframe)
