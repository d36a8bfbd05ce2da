"""RL agent: the deployed RL policy (a registry version with ``task = "rl"``, production alias, trained
on this symbol and timeframe) turned into a vote. ``ctx.rl`` carries the loaded policy, its version
and the feature row of the version's feature set (looked up outside the agents, like the ML
agent's prediction); the agent builds the state from the recent closes, the row and the position
held, and votes the policy's greedy target position: long BUY, short SELL, flat HOLD. A version the
walk-forward evaluation called ``no_edge`` abstains, as does a missing policy or feature.
"""

from __future__ import annotations

import numpy as np

from intelligence.agents.base import Agent, Context, Vote, abstain, register


@register
class RLAgent(Agent):
    name = "rl"
    tier = "advanced"
    summary = "deployed reinforcement-learning policy: its greedy target position (long/short/flat)"
    required_features = ()
    default_settings = {"min_confidence": 0.0}

    def vote(self, ctx: Context) -> Vote:
        rl = ctx.rl
        if not rl or rl.get("policy") is None:
            return abstain("no deployed RL policy")
        version = rl.get("version")
        if rl.get("no_edge"):
            return abstain("the deployed RL policy has no demonstrated out-of-sample edge", version=version)
        policy = rl["policy"]
        spec = policy.spec
        closes = np.asarray(ctx.closes, dtype=np.float64)[-(spec.n_lags + 1) :]
        if closes.size < spec.n_lags + 1 or not np.all(np.isfinite(closes)):
            return abstain("not enough closes for the RL state", version=version)
        row = rl.get("features") or {}
        values = [row.get(n) for n in spec.feature_names]
        if any(v is None or v != v for v in values):
            return abstain("RL features missing or warming up", version=version)
        feats = np.tile(np.asarray(values, dtype=np.float64), (closes.size, 1)) if values else None
        qty = float((ctx.position or {}).get("qty") or 0.0)
        held = int(np.sign(qty))
        if held not in policy.positions:
            held = 0
        state = np.append(spec.market_states(closes, feats)[-1], float(held))
        out = policy.values(state)
        target = policy.positions[int(np.argmax(out))]
        confidence = policy.confidence(out)
        details = {
            "version": version,
            "algo": policy.algo,
            "target_position": target,
            "values": {str(p): float(v) for p, v in zip(policy.positions, out, strict=True)},
        }
        if confidence < self.params(ctx)["min_confidence"]:
            return Vote("HOLD", confidence, f"RL policy unsure ({confidence:.2f})", details)
        action = "BUY" if target > 0 else "SELL" if target < 0 else "HOLD"
        return Vote(action, confidence, f"RL policy ({policy.algo}) holds {target:+d}", details)
