"""Mean-reversion agent: fade stretched prices (z-score of close), and pairs when the tenant has one.

The single-instrument signal is the 20-bar z-score: beyond ``entry_z`` the agent bets on a return
toward the mean, with confidence growing until ``full_z``. A pair (``ctx.pair``) is optional; it
carries either a precomputed ``spread_z`` or the partner's recent ``closes`` (aligned with
``ctx.closes``, newest last), from which the log-price spread against an OLS hedge ratio is
z-scored over ``pair_lookback`` bars (a few dozen points: microseconds). A rich spread means this
instrument is expensive relative to its partner: SELL it. When both signals exist they are
averaged, the pair one weighted more because a cointegrated spread reverts more reliably than a
lone price.
"""

from __future__ import annotations

import math

import numpy as np

from intelligence.agents.base import Agent, Context, Vote, abstain, clip, directional_vote, register


def spread_zscore(a: np.ndarray, b: np.ndarray, lookback: int, hedge_ratio: float | None = None) -> float:
    """z-score of the newest log spread ``log a - beta log b`` over the last ``lookback`` points.

    Computed from five sums (two sums, three dot products) of the logs relative to the newest price,
    which keeps them near zero (no cancellation) and costs a handful of numpy calls on ~60 points;
    with an OLS ``beta`` the residual variance follows from the same sums."""
    n = min(len(a), len(b), lookback)
    if n < 10:
        return math.nan
    x, y = np.log(a[-n:] / a[-1]), np.log(b[-n:] / b[-1])  # newest point is (0, 0)
    sx, sy = float(x.sum()), float(y.sum())
    sxx, syy, sxy = float(x @ x) - sx * sx / n, float(y @ y) - sy * sy / n, float(x @ y) - sx * sy / n
    if hedge_ratio is None:
        beta = sxy / syy if syy > 0 else 0.0
        ss = sxx - beta * sxy  # residual sum of squares of the centred OLS fit
    else:
        beta = float(hedge_ratio)
        ss = sxx - 2 * beta * sxy + beta * beta * syy
    if ss <= 1e-24 * n:
        return 0.0
    last = -(sx - beta * sy) / n  # newest spread (0) minus the mean spread
    return last / math.sqrt(ss / (n - 1))


@register
class MeanReversionAgent(Agent):
    name = "mean_reversion"
    tier = "advanced"
    summary = "fades 20-bar z-score extremes; trades the spread against a partner when a pair is given"
    required_features = ("zscore_20",)
    default_settings = {"entry_z": 1.5, "full_z": 3.0, "pair_lookback": 60, "pair_weight": 0.65, "threshold": 0.05}

    def _strength(self, z: float, p: dict) -> float:
        """-1..1, positive = buy; 0 inside the entry band."""
        excess = abs(z) - p["entry_z"]
        if excess <= 0:
            return 0.0
        return -math.copysign(clip(0.3 + 0.7 * excess / max(p["full_z"] - p["entry_z"], 1e-9), 0.0, 1.0), z)

    def vote(self, ctx: Context) -> Vote:
        p = self.params(ctx)
        z = ctx.features.get("zscore_20")
        has_z = z is not None and z == z
        pair_z = math.nan
        if ctx.pair:
            if ctx.pair.get("spread_z") is not None:
                pair_z = float(ctx.pair["spread_z"])
            elif ctx.pair.get("closes") is not None:
                pair_z = spread_zscore(
                    np.asarray(ctx.closes, dtype=float),
                    np.asarray(ctx.pair["closes"], dtype=float),
                    int(p["pair_lookback"]),
                    ctx.pair.get("hedge_ratio"),
                )
        has_pair = pair_z == pair_z
        if not has_z and not has_pair:
            return abstain("z-score warming up and no pair", missing=["zscore_20"])
        details: dict = {}
        parts = []
        if has_z:
            s = self._strength(z, p)
            details["zscore"], details["single"] = z, s
            parts.append(f"z {z:+.2f}")
        if has_pair:
            ps = self._strength(pair_z, p)
            details["pair_z"], details["pair"] = pair_z, ps
            details["partner"] = ctx.pair.get("symbol")
            parts.append(f"pair spread z {pair_z:+.2f}")
        if has_z and has_pair:
            w = p["pair_weight"]
            score = (1 - w) * details["single"] + w * details["pair"]
        else:
            score = details["single"] if has_z else details["pair"]
        details["score"] = score
        band = f"entry at |z| >= {p['entry_z']:g}"
        return directional_vote(score, p["threshold"], f"{', '.join(parts)} ({band}) -> score {score:+.2f}", details)
