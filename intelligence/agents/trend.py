"""Trend agent: direction from moving averages and +DI/-DI, strength from ADX.

ADX measures how strongly price trends, not which way, so it only scales the vote; below
``adx_min`` there is no trend to follow and the agent says HOLD with the little confidence it has
(a HOLD that still counts as "no edge" in the consensus, unlike an abstention).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from intelligence.agents.base import Context, FeatureAgent, Vote, clip, directional_vote, register


@register
class TrendAgent(FeatureAgent):
    name = "trend"
    tier = "basic"
    summary = "EMA 20/50 and SMA 200 alignment with +DI/-DI, scaled by ADX strength"
    required_features = ("adx_14", "plus_di_14", "minus_di_14", "ema_20", "ema_50", "sma_200")
    default_settings = {"adx_min": 20.0, "adx_strong": 40.0, "threshold": 0.15}

    def decide(self, ctx: Context, f: Mapping[str, float], p: dict[str, Any]) -> Vote:
        adx, pdi, mdi = f["adx_14"], f["plus_di_14"], f["minus_di_14"]
        close = ctx.close
        ema20, ema50, sma200 = f["ema_20"], f["ema_50"], f["sma_200"]
        votes = (
            (1 if ema20 > ema50 else -1 if ema20 < ema50 else 0)
            + (1 if close > sma200 else -1 if close < sma200 else 0)
            + (1 if pdi > mdi else -1 if pdi < mdi else 0)
        )
        direction = votes / 3.0
        strength = clip((adx - p["adx_min"]) / max(p["adx_strong"] - p["adx_min"], 1e-9), 0.0, 1.0)
        score = direction * strength
        details = {"adx": adx, "alignment": direction, "strength": strength, "score": score}
        if adx < p["adx_min"]:
            return Vote("HOLD", 0.1, f"ADX {adx:.0f} < {p['adx_min']:.0f}: no trend", details)
        side = "up" if direction > 0 else "down" if direction < 0 else "mixed"
        reason = f"ADX {adx:.0f}, averages and DI {side} ({votes:+d}/3) -> score {score:+.2f}"
        return directional_vote(score, p["threshold"], reason, details)
