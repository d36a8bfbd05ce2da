"""Risk agent: vetoes trades that add risk beyond the tenant's limits, and cuts size before that.

It checks four things, each against a setting: drawdown (``position["drawdown"]``, a fraction of
peak equity), exposure (``position["exposure"]``, gross fraction of equity), volatility (the
20-bar volatility against its own 100-bar norm, so the limit means the same on 1m and 1d bars) and
liquidity (the quoted spread). A breach vetoes only the sides that would ADD risk
(``details["veto_sides"]``): when already long, a SELL that reduces the position stays allowed,
because blocking the exit is the riskier choice. Short of a breach, ``size_cap`` shrinks with
the remaining exposure headroom and with volatility above its norm.
"""

from __future__ import annotations

import math

from intelligence.agents.base import Agent, Context, Vote, register


def _num(x, default: float = 0.0) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return default
    return x if math.isfinite(x) else default


@register
class RiskAgent(Agent):
    name = "risk"
    tier = "basic"
    directional = False
    summary = "veto on drawdown / exposure / volatility / spread limits; size cap from headroom and volatility"
    required_features = ("volatility_20", "volatility_100")
    default_settings = {
        "max_drawdown": 0.15,
        "max_exposure": 1.0,
        "max_vol_ratio": 3.0,
        "max_spread_bps": 50.0,
        "max_position": 0.25,  # cap on one trade's size, fraction of equity
    }

    def vote(self, ctx: Context) -> Vote:
        p = self.params(ctx)
        pos = ctx.position or {}
        qty = _num(pos.get("qty"))
        drawdown = abs(_num(pos.get("drawdown")))
        exposure = abs(_num(pos.get("exposure")))
        v20, v100 = ctx.features.get("volatility_20"), ctx.features.get("volatility_100")
        vol_ratio = v20 / v100 if v20 == v20 and v100 and v100 == v100 and v100 > 0 else math.nan
        adding = ["BUY"] if qty > 0 else ["SELL"] if qty < 0 else ["BUY", "SELL"]
        breaches = []
        if drawdown > p["max_drawdown"]:
            breaches.append(f"drawdown {drawdown:.1%} > {p['max_drawdown']:.1%}")
        if exposure >= p["max_exposure"]:
            breaches.append(f"exposure {exposure:.2f} >= {p['max_exposure']:.2f}")
        if vol_ratio == vol_ratio and vol_ratio > p["max_vol_ratio"]:
            breaches.append(f"volatility {vol_ratio:.1f}x its norm > {p['max_vol_ratio']:.1f}x")
        if ctx.spread_bps is not None and ctx.spread_bps > p["max_spread_bps"]:
            breaches.append(f"spread {ctx.spread_bps:.0f} bps > {p['max_spread_bps']:.0f} bps (illiquid)")
        details = {"drawdown": drawdown, "exposure": exposure, "vol_ratio": vol_ratio, "breaches": breaches}
        if breaches:
            details["veto_sides"] = adding
            return Vote("HOLD", 1.0, "veto " + " / ".join(adding) + ": " + "; ".join(breaches), details, veto=True)
        headroom = max(0.0, p["max_exposure"] - exposure)
        vol_cut = 1.0 / vol_ratio if vol_ratio == vol_ratio and vol_ratio > 1.0 else 1.0
        cap = min(p["max_position"], headroom) * vol_cut
        details["size_cap"] = cap
        return Vote("HOLD", 0.0, f"within limits; size cap {cap:.3f}", details, size_cap=cap)
