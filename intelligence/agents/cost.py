"""Cost agent: skips trades whose expected edge cannot pay fees, spread and slippage.

A direction call right with probability ``p`` on a symmetric move of expected size ``m`` earns
``(2p - 1) m`` before costs, so it pays only when ``p > 0.5 + cost / (2 m)``: that break-even
probability is published as ``details["breakeven_p"]`` and the consensus engine compares it with
its calibrated confidence. The expected move is the mean absolute return of a normal with the
20-bar volatility over ``horizon_bars`` (``sigma sqrt(h) sqrt(2 / pi)``). When even a certain call
could not pay (``breakeven_p >= 1``), or the model's predicted return is below the cost, the agent
vetoes outright.
"""

from __future__ import annotations

import math

from intelligence.agents.base import Agent, Context, Vote, abstain, register

_MEAN_ABS = math.sqrt(2.0 / math.pi)


@register
class CostAgent(Agent):
    name = "cost"
    tier = "basic"
    directional = False
    summary = "break-even probability from fees + spread + slippage against the expected move"
    required_features = ("volatility_20",)
    default_settings = {"fees_bps": 5.0, "slippage_bps": 2.0, "horizon_bars": 1.0, "default_spread_bps": 2.0}

    def vote(self, ctx: Context) -> Vote:
        p = self.params(ctx)
        vol = ctx.features.get("volatility_20")
        if vol is None or vol != vol:
            return abstain("volatility warming up", missing=["volatility_20"])
        spread = ctx.spread_bps if ctx.spread_bps is not None else p["default_spread_bps"]
        cost_bps = 2 * p["fees_bps"] + 2 * p["slippage_bps"] + spread  # round trip; half spread each way
        move_bps = vol * math.sqrt(max(p["horizon_bars"], 1e-9)) * _MEAN_ABS * 1e4
        breakeven = 0.5 + cost_bps / (2 * move_bps) if move_bps > 0 else math.inf
        details = {"cost_bps": cost_bps, "move_bps": move_bps, "breakeven_p": min(breakeven, 1.0)}
        pred = (ctx.ml or {}).get("prediction")
        if pred is not None and abs(float(pred)) * 1e4 < cost_bps:
            details["veto_sides"] = ["BUY", "SELL"]
            reason = f"skip: predicted move {abs(float(pred)) * 1e4:.1f} bps < cost {cost_bps:.1f} bps"
            return Vote("HOLD", 1.0, reason, details, veto=True)
        if breakeven >= 1.0:
            details["veto_sides"] = ["BUY", "SELL"]
            reason = f"skip: expected move {move_bps:.1f} bps cannot pay cost {cost_bps:.1f} bps"
            return Vote("HOLD", 1.0, reason, details, veto=True)
        reason = f"cost {cost_bps:.1f} bps vs move {move_bps:.1f} bps: need p > {breakeven:.3f}"
        return Vote("HOLD", 0.0, reason, details)
