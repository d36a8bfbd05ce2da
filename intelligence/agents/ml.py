"""ML agent: turns the registry's production-model prediction (given in ``ctx.ml``) into a vote.

The prediction is made outside the agents (the model's own features, its own bundle cache), so
this agent only interprets it: a classification's up/down probabilities, or a regression's
predicted return. A model the registry marked ``no_edge`` (its out-of-sample accuracy did not beat
the baselines) abstains: voting with it would pass noise off as a view.
"""

from __future__ import annotations

import math

from intelligence.agents.base import Agent, Context, Vote, abstain, directional_vote, register


@register
class MLAgent(Agent):
    name = "ml"
    tier = "advanced"
    summary = "production model prediction: P(up) - P(down), or predicted return in units of volatility"
    required_features = ()
    default_settings = {"min_probability": 0.52, "return_scale_vol": 0.5, "threshold": 0.04}

    def vote(self, ctx: Context) -> Vote:
        pred = ctx.ml
        if not pred:
            return abstain("no model prediction")
        if pred.get("no_edge"):
            return abstain("the production model has no demonstrated edge", version=pred.get("version"))
        p = self.params(ctx)
        details: dict = {"version": pred.get("version")} if pred.get("version") is not None else {}
        probs = pred.get("probabilities")
        if probs:
            up, down = float(probs.get("up", 0.0)), float(probs.get("down", 0.0))
            total = up + down
            if total <= 0:
                return abstain("prediction without up/down probabilities")
            up /= total
            details["p_up"] = up
            if max(up, 1 - up) < p["min_probability"]:
                return Vote("HOLD", 0.0, f"model P(up) {up:.2f}: too close to a coin", details)
            score = 2 * up - 1
            return directional_vote(score, p["threshold"], f"model P(up) {up:.2f}", details)
        if pred.get("prediction") is not None:
            r = float(pred["prediction"])
            vol = ctx.features.get("volatility_20")
            scale = p["return_scale_vol"] * vol if vol and vol == vol and vol > 0 else 0.01
            score = math.tanh(r / scale)
            details.update(predicted_return=r, score=score)
            return directional_vote(score, p["threshold"], f"model predicts return {r:+.4f}", details)
        return abstain("prediction has neither probabilities nor a value")
