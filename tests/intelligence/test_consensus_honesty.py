"""Honesty of the consensus on streams whose truth is known (tests/intelligence/sim.py).

(a) one informative agent among coin-flippers: learning finds it, and the consensus is as good as
    the best single agent chosen in hindsight (within 2 points) and clearly better than equal weights;
(b) only coin-flippers: the consensus is a coin too (50 % +- 3 points), says so by engaging
    conservative mode, and rarely trades;
(c) calibration: in every bin of the raw score, the confidence reported BEFORE each outcome is
    within 4 points of the hit rate observed afterwards (bins with >= 500 outcomes; the standard
    error of such a bin's observed rate is <= 2.2 points).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from intelligence.consensus import ConsensusEngine
from tests.intelligence.sim import simulate

WARMUP = 1000  # steps excluded from accuracy comparisons: the weights are still being learned


def test_one_informative_agent_dominates_and_matches_the_best_in_hindsight():
    agents = {"informed": 0.62, "r1": 0.5, "r2": 0.5, "r3": 0.5, "r4": 0.5}
    for seed in (1, 3):
        engine = ConsensusEngine({"agents": list(agents)})
        res = simulate(engine, agents, steps=4000, seed=seed)
        consensus = np.mean(res.consensus_hits[WARMUP:])
        equal = np.mean(res.equal_hits[WARMUP:])
        best = max(np.mean(h[WARMUP:]) for h in res.agent_hits.values())
        weights = engine.weights("SIM")
        assert max(weights, key=weights.get) == "informed"
        assert weights["informed"] > 0.8, weights
        assert abs(consensus - best) <= 0.02, (consensus, best)
        assert consensus >= equal + 0.03, (consensus, equal)
        traded = [hit for _, hit in res.traded if _ >= WARMUP]
        assert len(traded) > 0.5 * (4000 - WARMUP)  # it is confident enough to act ...
        assert np.mean(traded) > 0.58  # ... and right when it does
        status = engine.status()
        assert status["weights"]["SIM"]["informed"]["hit_rate"] > 0.55


def test_all_random_agents_give_a_coin_and_conservative_mode():
    agents = {f"r{i}": 0.5 for i in range(5)}
    engine = ConsensusEngine({"agents": list(agents)})
    res = simulate(engine, agents, steps=4000, seed=2)
    assert abs(np.mean(res.consensus_hits) - 0.5) <= 0.03
    window = engine.flow["conservative"]["window"]
    assert any(res.conservative)
    assert np.mean(res.conservative[window:]) > 0.5
    assert len(res.traded) < 0.1 * 4000  # calibrated confidence stays near 0.5: mostly HOLD


def test_reported_confidence_matches_observed_hit_rate_per_bin():
    agents = {"graded": "graded", "r1": 0.5, "r2": 0.5}
    engine = ConsensusEngine({"agents": list(agents)})
    res = simulate(engine, agents, steps=30000, seed=3)
    bins = defaultdict(list)
    for b, p, hit in res.reported[10000:]:
        bins[b].append((p, hit))
    checked = 0
    for b, rows in sorted(bins.items()):
        if len(rows) < 500:
            continue
        arr = np.array(rows)
        reported, observed = arr[:, 0].mean(), arr[:, 1].mean()
        assert abs(reported - observed) <= 0.04, (b, len(rows), reported, observed)
        checked += 1
    assert checked >= 6
    # the raw score is not a probability: read naively (0.5 + |S| / 2) it would overstate the edge
    table = engine.calibration_table()
    top = table[-1]
    assert top["confidence"] < 0.5 + top["from"] / 2
