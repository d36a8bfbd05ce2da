"""Fundamental agent: a slow valuation / earnings view from fundamentals the tenant posts.

Inputs (all optional, fractions not percents): ``pe`` with ``fair_pe`` (or the ``fair_pe`` setting),
``earnings_surprise`` (0.08 = reported 8 % above consensus), ``revenue_growth`` (year on year) and
``debt_to_equity``. Each present input gives a component in [-1, 1]; the score is their weighted
mean over the inputs present, so a tenant posting only an earnings surprise still gets a vote. A
negative P/E (losses) reads as expensive. Values that are not numbers are ignored and reported in
``details["ignored"]`` rather than failing the agent.

Fundamentals change quarterly while the agent runs every bar, so the vote is cached per
fundamentals object (and settings): a tenant posting new figures gives a new dict.
"""

from __future__ import annotations

import math

from intelligence.agents.base import Agent, Context, Vote, abstain, clip, directional_vote, register


def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


@register
class FundamentalAgent(Agent):
    name = "fundamental"
    tier = "advanced"
    summary = "valuation (P/E vs fair), earnings surprise, growth and leverage from posted fundamentals"
    required_features = ()
    default_settings = {
        "fair_pe": 18.0,
        "surprise_scale": 0.05,
        "growth_scale": 0.15,
        "max_debt_to_equity": 2.0,
        "w_value": 0.3,
        "w_surprise": 0.4,
        "w_growth": 0.2,
        "w_leverage": 0.1,
        "threshold": 0.15,
        "max_confidence": 0.7,
    }

    _last: tuple | None = None  # (fundamentals object, settings object, vote)

    def vote(self, ctx: Context) -> Vote:
        data = ctx.fundamentals
        if not data:
            return abstain("no fundamentals posted")
        p = self.params(ctx)
        last = self._last
        if last is not None and last[0] is data and last[1] is p:
            return last[2]
        vote = self._vote(data, p)
        self._last = (data, p, vote)
        return vote

    def _vote(self, data: dict, p: dict) -> Vote:
        parts: dict[str, float] = {}
        ignored = [k for k in ("pe", "fair_pe", "earnings_surprise", "revenue_growth", "debt_to_equity")
                   if k in data and _num(data[k]) is None]  # fmt: skip
        pe = _num(data.get("pe"))
        fair = _num(data.get("fair_pe")) or p["fair_pe"]
        if pe is not None:
            parts["value"] = -1.0 if pe <= 0 else clip((fair - pe) / fair)
        surprise = _num(data.get("earnings_surprise"))
        if surprise is not None:
            parts["surprise"] = math.tanh(surprise / p["surprise_scale"])
        growth = _num(data.get("revenue_growth"))
        if growth is not None:
            parts["growth"] = math.tanh(growth / p["growth_scale"])
        de = _num(data.get("debt_to_equity"))
        if de is not None:
            parts["leverage"] = clip(1.0 - 2.0 * de / p["max_debt_to_equity"], -1.0, 0.5)
        if not parts:
            return abstain("fundamentals have no usable field", ignored=ignored)
        weights = {k: p[f"w_{k}"] for k in parts}
        wsum = sum(weights.values()) or 1.0
        score = sum(weights[k] * v for k, v in parts.items()) / wsum
        details = {"components": parts, "score": score, "ignored": ignored}
        reason = ", ".join(f"{k} {v:+.2f}" for k, v in parts.items())
        return directional_vote(score, p["threshold"], f"{reason} -> {score:+.2f}", details, p["max_confidence"])
