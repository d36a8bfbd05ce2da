"""Regime agent: classifies the market (trending / ranging, calm / turbulent) and scales the others.

It never votes BUY or SELL: knowing the regime says which other agents to trust, not where price
goes. The scaling is published as ``details["scale"]`` (agent name -> weight multiplier) and the
consensus engine multiplies its learned weights by it: trend following is worth more in a trend,
mean reversion in a range, and every directional view less when volatility is far above its norm.
The volatility ratio compares the 20-bar to the 100-bar volatility feature (both precomputed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from intelligence.agents.base import Context, FeatureAgent, Vote, register


@register
class RegimeAgent(FeatureAgent):
    name = "regime"
    tier = "advanced"
    directional = False
    summary = "trend/range and volatility regime; publishes weight multipliers for the other agents"
    required_features = ("adx_14", "volatility_20", "volatility_100")
    default_settings = {
        "adx_trend": 25.0,
        "adx_range": 20.0,
        "high_vol_ratio": 1.5,
        "low_vol_ratio": 0.7,
        "favour": 1.4,
        "disfavour": 0.6,
        "high_vol_scale": 0.7,
    }

    def decide(self, ctx: Context, f: Mapping[str, float], p: dict[str, Any]) -> Vote:
        adx, v20, v100 = f["adx_14"], f["volatility_20"], f["volatility_100"]
        ratio = v20 / v100 if v100 > 0 else 1.0
        trend = "trending" if adx >= p["adx_trend"] else "ranging" if adx <= p["adx_range"] else "neutral"
        vol = "high" if ratio >= p["high_vol_ratio"] else "low" if ratio <= p["low_vol_ratio"] else "normal"
        base = p["high_vol_scale"] if vol == "high" else 1.0
        scale = {"technical": base, "pattern": base, "ml": base, "sentiment": base, "fundamental": base}
        if trend == "trending":
            scale["trend"], scale["mean_reversion"] = base * p["favour"], base * p["disfavour"]
        elif trend == "ranging":
            scale["trend"], scale["mean_reversion"] = base * p["disfavour"], base * p["favour"]
        else:
            scale["trend"] = scale["mean_reversion"] = base
        details = {"regime": f"{trend}/{vol}-vol", "adx": adx, "vol_ratio": ratio, "scale": scale}
        return Vote("HOLD", 0.0, f"{trend} (ADX {adx:.0f}), volatility {vol} ({ratio:.2f}x its norm)", details)
