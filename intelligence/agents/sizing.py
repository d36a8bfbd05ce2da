"""Sizing agent and the capped-Kelly rule the consensus engine sizes with.

Kelly's fraction ``p - (1 - p) / b`` maximises long-run growth only when ``p`` and the payoff ``b``
are known exactly; with estimated ones full Kelly overbets badly, so the size is a fraction of it
(``kelly_fraction``, a quarter by default) and hard-capped (``max_size``). The ``p`` used is the
consensus's CALIBRATED confidence, so an uncalibrated, overconfident score cannot inflate sizes.

The agent itself cannot know the consensus probability when it votes, so it contributes the
parameters (``details``) and a volatility-scaled cap, and it defers (``size_cap = 0``) when the
spread or the volatility is abnormal: sizing from estimates calibrated in normal conditions would be
wrong exactly then.
"""

from __future__ import annotations

from intelligence.agents.base import Agent, Context, Vote, register


def capped_kelly(p: float, payoff: float = 1.0, fraction: float = 0.25, cap: float = 0.1) -> float:
    """Position size as a fraction of equity: ``fraction`` x Kelly, in [0, cap]; 0 without an edge."""
    if payoff <= 0 or not 0.0 <= p <= 1.0:
        return 0.0
    kelly = p - (1.0 - p) / payoff
    return 0.0 if kelly <= 0 else min(cap, fraction * kelly)


@register
class SizingAgent(Agent):
    name = "sizing"
    tier = "basic"
    directional = False
    summary = "capped fractional Kelly from calibrated confidence; defers on abnormal spread or volatility"
    required_features = ("volatility_20", "volatility_100")
    default_settings = {
        "kelly_fraction": 0.25,
        "payoff": 1.0,
        "max_size": 0.1,
        "defer_spread_bps": 25.0,
        "defer_vol_ratio": 2.5,
    }

    def vote(self, ctx: Context) -> Vote:
        p = self.params(ctx)
        v20, v100 = ctx.features.get("volatility_20"), ctx.features.get("volatility_100")
        ratio = v20 / v100 if v20 == v20 and v100 and v100 == v100 and v100 > 0 else 1.0
        details = {"kelly_fraction": p["kelly_fraction"], "payoff": p["payoff"], "max_size": p["max_size"]}
        details["vol_ratio"] = ratio
        if ctx.spread_bps is not None and ctx.spread_bps > p["defer_spread_bps"]:
            details["defer"] = True
            return Vote("HOLD", 0.0, f"defer: spread {ctx.spread_bps:.0f} bps is abnormal", details, size_cap=0.0)
        if ratio > p["defer_vol_ratio"]:
            details["defer"] = True
            return Vote("HOLD", 0.0, f"defer: volatility {ratio:.1f}x its norm is abnormal", details, size_cap=0.0)
        cap = p["max_size"] / max(1.0, ratio)  # volatility targeting: same risk for a bigger move
        return Vote("HOLD", 0.0, f"quarter-Kelly up to {cap:.3f} of equity", details, size_cap=cap)
