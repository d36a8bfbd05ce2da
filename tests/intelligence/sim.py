"""Synthetic feedback streams for the consensus honesty tests: agents of known accuracy, true directions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intelligence.agents import Vote
from intelligence.consensus import ConsensusEngine


@dataclass
class SimResult:
    consensus_hits: list[int] = field(default_factory=list)  # consensus direction right? (0 when it had none)
    equal_hits: list[int] = field(default_factory=list)  # equal-weight, confidence-weighted vote right?
    agent_hits: dict[str, list[int]] = field(default_factory=dict)
    traded: list[tuple[int, int]] = field(default_factory=list)  # (step, hit) of non-HOLD decisions
    reported: list[tuple[int, float, int]] = field(default_factory=list)  # (bin, confidence, hit)
    conservative: list[bool] = field(default_factory=list)


def simulate(engine: ConsensusEngine, agents: dict[str, object], steps: int, seed: int, symbol: str = "SIM"):
    """``agents``: name -> accuracy (float: right with that probability, confidence U(0.3, 1)) or
    "graded" (confidence c ~ U(0, 1), right with probability 0.5 + 0.3 c)."""
    rng = np.random.default_rng(seed)
    res = SimResult(agent_hits={name: [] for name in agents})
    names = list(agents)
    for step in range(steps):
        y = 1 if rng.random() < 0.5 else -1
        votes = {}
        for name in names:
            kind = agents[name]
            if kind == "graded":
                c = float(rng.random())
                right = rng.random() < 0.5 + 0.3 * c
            else:
                c = float(rng.uniform(0.3, 1.0))
                right = rng.random() < kind
            d = y if right else -y
            votes[name] = Vote("BUY" if d > 0 else "SELL", c, "simulated")
            res.agent_hits[name].append(int(right))
        decision = engine.decide(votes, symbol=symbol)
        s = decision.direction
        res.consensus_hits.append(int(s == y))
        eq = sum(v.direction * v.confidence for v in votes.values())
        res.equal_hits.append(int((1 if eq > 0 else -1 if eq < 0 else 0) == y))
        if decision.action != "HOLD":
            res.traded.append((step, int(decision.direction == y)))
        if s and decision.fallback is None:
            res.reported.append((engine._bin(abs(decision.raw_score)), decision.confidence, int(s == y)))
        engine.record_outcome(symbol, votes, decision, y)
        res.conservative.append(engine.conservative)
    return res
