"""Consensus engine rules on hand-made votes: thresholds, veto, conflict, fallback, conservative
mode, explanations, sizing and cost gates, flow validation and the state round trip."""

from __future__ import annotations

import json
import time

import pytest

from api.errors import ApplicationError
from intelligence.agents import Agent, Vote, build_agents
from intelligence.consensus import (
    CONSERVATIVE_PRESET,
    DEFAULT_FLOW,
    ConsensusEngine,
    agent_settings,
    resolve_flow,
    run_agents,
)
from tests.intelligence.helpers import make_ctx, realistic_ctx

FLOW = {"agents": ["technical", "trend", "ml", "sentiment", "risk", "sizing", "cost", "regime"]}


def buy(c=0.9, reason="up"):
    return Vote("BUY", c, reason)


def sell(c=0.9, reason="down"):
    return Vote("SELL", c, reason)


def unanimous(c=0.95, **extra):
    return {"technical": buy(c), "trend": buy(c), "ml": buy(c), "sentiment": buy(c), **extra}


def test_defaults_and_preset():
    assert DEFAULT_FLOW["min_confidence"] == 0.55
    assert CONSERVATIVE_PRESET["min_confidence"] == 0.75
    assert resolve_flow(CONSERVATIVE_PRESET)["min_confidence"] == 0.75
    assert resolve_flow(None) == resolve_flow(DEFAULT_FLOW)


def test_flow_validation_is_a_user_error():
    for bad in (
        {"min_confidnce": 0.6},
        {"min_confidence": 1.5},
        {"conservative": {"enter_below": 0.6, "exit_above": 0.5}},
        {"weights": {"technical": -1}},
        {"calibration": {"edges": [0.1, 0.5]}},
        {"agents": "technical"},
    ):
        with pytest.raises(ApplicationError) as exc:
            resolve_flow(bad)
        assert exc.value.code == "invalid_flow"


def test_strong_agreement_trades_with_kelly_size_and_explains_itself():
    engine = ConsensusEngine(FLOW)
    d = engine.decide(unanimous(), symbol="X")
    assert d.action == "BUY" and d.raw_score == pytest.approx(0.95)
    # no outcomes yet: the prior shrinks toward 0.5 (0.5 + 0.3 x bin middle 0.9 / 2)
    assert d.confidence == pytest.approx(0.635)
    assert d.size == pytest.approx(0.25 * (2 * 0.635 - 1))
    assert d.threshold == 0.55 and d.agreement == 1.0
    for word in ("BUY", "calibrated confidence 0.635 >= 0.55", "technical (w 0.25 x c 0.95)", "agreement 1.00"):
        assert word in d.explanation
    assert set(d.weights) == {"technical", "trend", "ml", "sentiment"}
    json.dumps(d.to_json())


def test_hold_below_min_confidence_and_min_agreement():
    engine = ConsensusEngine(FLOW)
    weak = engine.decide(unanimous(0.2), symbol="X")  # prior: 0.5 + 0.3 x 0.225 / 2 = 0.534
    assert weak.action == "HOLD" and weak.size == 0
    assert "calibrated confidence" in weak.explanation and "< 0.55" in weak.explanation
    split = {"technical": buy(), "trend": buy(), "ml": Vote("HOLD", 0.5, "flat"), "sentiment": Vote("HOLD", 0.5, "x")}
    engine = ConsensusEngine({**FLOW, "min_confidence": 0.5, "min_agreement": 0.6})
    d = engine.decide(split, symbol="X")
    assert d.action == "HOLD" and "agreement 0.50 < 0.60" in d.explanation


def test_strong_disagreement_holds():
    engine = ConsensusEngine(FLOW)
    d = engine.decide({"technical": buy(1.0), "trend": buy(1.0), "ml": buy(0.9), "sentiment": sell(1.0)}, symbol="X")
    assert d.action == "BUY"
    d = engine.decide({"technical": buy(1.0), "trend": buy(0.9), "ml": sell(1.0), "sentiment": sell(0.5)}, symbol="X")
    assert d.action == "HOLD" and "strong disagreement" in d.explanation


def test_risk_veto_blocks_only_the_sides_it_names():
    engine = ConsensusEngine(FLOW)
    veto_all = Vote("HOLD", 1.0, "veto: drawdown", {"veto_sides": ["BUY", "SELL"]}, veto=True)
    d = engine.decide(unanimous(risk=veto_all), symbol="X")
    assert d.action == "HOLD" and d.vetoed_by == "risk" and "vetoed by risk" in d.explanation
    veto_buy = Vote("HOLD", 1.0, "veto: long exposure", {"veto_sides": ["BUY"]}, veto=True)
    sells = {name: sell(0.95) for name in unanimous()}
    assert engine.decide({**sells, "risk": veto_buy}, symbol="X").action == "SELL"


def test_real_risk_agent_veto_through_the_engine():
    ctx = make_ctx(position={"qty": 0, "drawdown": 0.5}, features={"rsi_14": 15.0, "bb_percent_b_20_2": -0.1})
    flow = {"agents": ["technical", "risk"]}
    run = run_agents(build_agents(flow["agents"]), ctx)
    d = ConsensusEngine({**flow, "min_confidence": 0.5}).decide(run.votes, symbol="TEST")
    assert d.action == "HOLD" and d.vetoed_by == "risk" and "drawdown" in d.explanation


def test_cost_break_even_and_sizing_deferral_hold():
    engine = ConsensusEngine(FLOW)
    cost = Vote("HOLD", 0.0, "need p > 0.70", {"breakeven_p": 0.7})
    d = engine.decide(unanimous(cost=cost), symbol="X")
    assert d.action == "HOLD" and "edge below costs" in d.explanation
    params = {"kelly_fraction": 0.25, "payoff": 1.0, "max_size": 0.1, "defer": True}
    defer = Vote("HOLD", 0.0, "defer: spread 60 bps is abnormal", params, size_cap=0.0)
    d = engine.decide(unanimous(sizing=defer), symbol="X")
    assert d.action == "HOLD" and "defer" in d.explanation
    risk_cap = Vote("HOLD", 0.0, "within limits", size_cap=0.02)
    d = engine.decide(unanimous(risk=risk_cap), symbol="X")
    assert d.action == "BUY" and d.size == pytest.approx(0.02) and "size capped by risk" in d.explanation


def test_regime_scale_moves_weights():
    engine = ConsensusEngine(FLOW)
    regime = Vote("HOLD", 0.0, "trending", {"scale": {"trend": 2.0, "technical": 0.5}})
    d = engine.decide(unanimous(regime=regime), symbol="X")
    assert d.weights["trend"] == pytest.approx(4 * d.weights["technical"])


class Boom(Agent):
    name = "boom"

    def vote(self, ctx):
        raise RuntimeError("feed down")


class Boom2(Boom):
    name = "boom2"


class Slow(Agent):
    name = "slow"

    def vote(self, ctx):
        time.sleep(0.003)
        return Vote("SELL", 1.0, "late")


class Steady(Agent):
    name = "steady"

    def vote(self, ctx):
        return Vote("BUY", 0.8, "steady")


def test_run_agents_records_errors_and_timeouts():
    run = run_agents([Boom(), Slow(), Steady()], make_ctx(), timeout_ms=1.0)
    assert list(run.votes) == ["steady"]
    assert run.failures["boom"].startswith("error: RuntimeError: feed down")
    assert run.failures["slow"].startswith("timeout")
    skipped = run_agents([Slow(), Steady()], make_ctx(), total_ms=1.0)
    assert skipped.failures["steady"].startswith("skipped")


def test_fallback_to_the_best_single_agent_when_others_fail():
    flow = {"agents": ["boom", "boom2", "steady"], "min_voters": 2}
    engine = ConsensusEngine(flow)
    run = run_agents([Boom(), Boom2(), Steady()], make_ctx())
    d = engine.decide(run.votes, symbol="X", failures=run.failures)
    assert d.fallback == "steady" and d.action == "HOLD"  # no track record yet: confidence 0.5
    assert "fallback to steady" in d.explanation and "feed down" in d.explanation
    for i in range(200):  # steady is right 80 % of the time
        engine.record_outcome("X", run.votes, d, 1 if i % 5 else -1)
    d = engine.decide(run.votes, symbol="X", failures=run.failures)
    assert d.fallback == "steady" and d.action == "BUY" and d.confidence > 0.7
    # a missing vote counts as a failure too; with enough voters there is no fallback
    engine = ConsensusEngine({"agents": ["a", "b", "c"], "min_voters": 2})
    d = engine.decide({"a": buy(), "b": buy()}, symbol="X")
    assert d.fallback is None and d.failures == {"c": "no vote"} and d.action == "BUY"
    d = engine.decide({}, symbol="X")
    assert d.action == "HOLD" and "no directional agent" in d.explanation


def test_conservative_mode_engages_and_releases():
    engine = ConsensusEngine(FLOW)
    votes = unanimous()
    d = engine.decide(votes, symbol="X")
    for _ in range(60):  # the consensus keeps calling BUY; the market keeps falling
        engine.record_outcome("X", votes, d, -1)
    assert engine.conservative and engine.status()["conservative"]["active"]
    d2 = engine.decide(votes, symbol="X")
    assert d2.conservative and d2.threshold == 0.75 and d2.action == "HOLD"
    assert "Conservative mode" in d2.explanation
    for _ in range(200):
        engine.record_outcome("X", votes, d, 1)
    assert not engine.conservative
    d3 = engine.decide(votes, symbol="X")
    assert not d3.conservative and d3.action == "BUY"


def test_conservative_mode_halves_sizes():
    engine = ConsensusEngine({**FLOW, "conservative": {"min_confidence": 0.55, "min_agreement": 0.5}})
    normal = engine.decide(unanimous(), symbol="X")
    engine.conservative = True
    small = engine.decide(unanimous(), symbol="X")
    assert small.action == "BUY" and small.size == pytest.approx(normal.size / 2)


def test_learning_moves_weights_toward_the_right_agent():
    engine = ConsensusEngine({"agents": ["good", "bad"]})
    votes = {"good": buy(0.8), "bad": sell(0.8)}
    d = engine.decide(votes, symbol="X")
    for _ in range(50):
        engine.record_outcome("X", votes, d, 1)
    w = engine.weights("X")
    assert w["good"] > 0.95 and engine.weights("Y") == {"good": 0.5, "bad": 0.5}
    assert "Y" not in engine.to_json()["log_weights"]  # asking does not create state
    engine.record_outcome("X", votes, d, 0)  # flat: skipped
    assert engine.status()["flat_outcomes"] == 1
    with pytest.raises(ApplicationError):
        engine.record_outcome("X", votes, d, 2)


def test_state_round_trip():
    engine = ConsensusEngine({**FLOW, "weights": {"ml": 2.0}})
    votes = unanimous()
    votes["ml"] = sell(0.6)
    for i in range(300):
        d = engine.decide(votes, symbol="X" if i % 2 else "Y")
        engine.record_outcome("X" if i % 2 else "Y", votes, d, 1 if i % 3 else -1)
    data = json.loads(json.dumps(engine.to_json()))
    clone = ConsensusEngine.from_json(data)
    assert clone.to_json() == engine.to_json()
    assert clone.status() == engine.status()
    a, b = engine.decide(votes, symbol="X"), clone.decide(votes, symbol="X")
    assert a.to_json() == b.to_json()
    with pytest.raises(ApplicationError):
        ConsensusEngine.from_json({"version": 99})
    with pytest.raises(ApplicationError):
        ConsensusEngine.from_json({**data, "calibration": {"n": [1.0], "hits": [1.0]}})


def test_full_pipeline_on_a_realistic_context():
    flow = resolve_flow({"agents": list(DEFAULT_FLOW["agents"]) + ["portfolio"]})
    ctx = realistic_ctx()
    ctx.settings = agent_settings(flow)
    run = run_agents(build_agents(flow["agents"], flow["settings"]), ctx, timeout_ms=flow["agent_timeout_ms"])
    assert not run.failures
    engine = ConsensusEngine(flow)
    d = engine.decide(run.votes, symbol=ctx.symbol, failures=run.failures)
    assert d.action in ("BUY", "SELL", "HOLD") and d.explanation
    assert "Advisory:" in d.explanation and "regime" in d.explanation
    engine.record_outcome(ctx.symbol, run.votes, d, 1)
    status = engine.status()
    assert set(status["weights"]["SYN"]) <= set(flow["agents"])
    assert len(status["calibration"]) == len(flow["calibration"]["edges"])


def test_adaptive_threshold_tracks_precision_within_its_bounds():
    flow = {**FLOW, "adaptive": {"enabled": True, "target_precision": 0.55, "floor": 0.52, "ceiling": 0.7}}
    engine = ConsensusEngine(flow)
    votes = unanimous()
    d = engine.decide(votes, symbol="X")
    assert d.action == "BUY" and engine.min_confidence() == 0.55
    # wrong trades: below min_samples nothing moves, then the threshold climbs to the ceiling, not past it
    for _ in range(29):
        engine.record_outcome("X", votes, d, -1)
    assert engine.min_confidence() == 0.55
    for _ in range(200):
        engine.record_outcome("X", votes, d, -1)
    assert engine.min_confidence() == pytest.approx(0.7)
    held = engine.decide(votes, symbol="X")
    # (the wrong calls also turned conservative mode on: its 0.75 floor applies on top)
    assert held.action == "HOLD" and engine.conservative and held.threshold == 0.75
    engine.conservative = False
    assert engine.decide(votes, symbol="X").threshold == pytest.approx(0.7)
    # right trades: it comes down to the floor, not below
    for _ in range(400):
        engine.record_outcome("X", votes, d, 1)
    assert engine.min_confidence() == pytest.approx(0.52)
    status = engine.status()["threshold"]
    assert status["adaptive"] and status["min_confidence"] == 0.52 and status["actionable_precision"] == 1.0
    # the learned threshold survives a restart
    again = ConsensusEngine.from_json(json.loads(json.dumps(engine.to_json())))
    assert again.min_confidence() == pytest.approx(0.52) and again.status()["threshold"] == status
    # HOLDs are not trades: they never move it
    hold = engine.decide({"technical": Vote("HOLD", 0.0, "flat")}, symbol="X")
    before = engine.threshold_offset
    for _ in range(50):
        engine.record_outcome("X", {"technical": Vote("HOLD", 0.0, "flat")}, hold, -1)
    assert engine.threshold_offset == before


def test_adaptive_threshold_is_off_by_default_and_validated():
    engine = ConsensusEngine(FLOW)
    votes = unanimous()
    d = engine.decide(votes, symbol="X")
    for _ in range(200):
        engine.record_outcome("X", votes, d, -1)
    assert engine.min_confidence() == 0.55 and engine.status()["threshold"]["adaptive"] is False
    for bad, path in (
        ({"adaptive": {"floor": 0.7, "ceiling": 0.6}}, "adaptive.ceiling"),
        ({"adaptive": {"enabled": "yes"}}, "adaptive.enabled"),
        ({"adaptive": {"step": 0.5}}, "adaptive.step"),
        ({"adaptive": {"nope": 1}}, "adaptive.nope"),
    ):
        with pytest.raises(ApplicationError) as err:
            resolve_flow(bad)
        assert err.value.code == "invalid_flow" and err.value.details["path"] == path
