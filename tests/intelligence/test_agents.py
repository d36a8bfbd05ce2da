"""Each agent on hand-made contexts: the textbook reading gives the textbook vote, and missing
inputs give an abstention rather than a guess."""

from __future__ import annotations

import math

import numpy as np
import pytest

from api.errors import ApplicationError
from intelligence.agents import (
    AGENT_FEATURE_SPEC,
    REGISTRY,
    agent_feature_spec,
    agents_for_plan,
    allocate,
    build_agents,
    capped_kelly,
    inverse_volatility,
    mean_variance,
    risk_parity,
    score_headline,
)
from intelligence.agents.features import HIGHER_TIMEFRAME, higher_timeframe_columns
from intelligence.agents.mean_reversion import spread_zscore
from tests.intelligence.helpers import make_ctx, realistic_ctx


def agent(name, **settings):
    return REGISTRY[name](settings)


# --- registry, feature spec, plans -----------------------------------------------------------------


def test_feature_spec_validates_and_covers_every_agent():
    AGENT_FEATURE_SPEC.validate()
    columns = set(AGENT_FEATURE_SPEC.columns())
    for name, cls in REGISTRY.items():
        assert set(cls.required_features) <= columns, name
    for tf in ("1m", "5m", "15m", "30m", "1h", "4h", "1d"):
        spec = agent_feature_spec(tf).validate(tf)
        htf = higher_timeframe_columns(tf)
        assert (htf is None) == (tf not in HIGHER_TIMEFRAME)
        if htf:
            assert set(htf) <= set(spec.columns())


def test_tiers_gate_agents_by_plan():
    assert set(agents_for_plan("basic")) == {"technical", "trend", "risk", "sizing", "cost"}
    assert set(agents_for_plan("advanced")) == set(REGISTRY)
    assert agents_for_plan(["basic", "ml"]) == [n for n in REGISTRY if REGISTRY[n].tier == "basic" or n == "ml"]
    for cls in REGISTRY.values():
        assert cls.tier in ("basic", "advanced")


def test_unknown_agent_and_bad_settings_are_user_errors():
    with pytest.raises(ApplicationError) as exc:
        build_agents(["technical", "astrology"])
    assert exc.value.code == "unknown_agent"
    with pytest.raises(ApplicationError) as exc:
        build_agents(["technical"], {"technical": {"oversld": 25}})
    assert exc.value.code == "invalid_agent_settings"
    with pytest.raises(ApplicationError):
        build_agents(["technical"], {"technical": {"oversold": "low"}})


def test_every_agent_votes_on_a_realistic_context():
    ctx = realistic_ctx()
    for name, cls in REGISTRY.items():
        vote = cls().vote(ctx)
        assert vote.action in ("BUY", "SELL", "HOLD") and 0 <= vote.confidence <= 1, name
        if not cls.directional:
            assert vote.action == "HOLD", name
        assert vote.reason
        vote.to_json()  # serialisable


def test_context_settings_override_the_agents_own():
    technical = agent("technical", oversold=25.0)
    ctx = make_ctx(features={"rsi_14": 25.0})
    assert technical.vote(ctx).details["rsi_c"] == 1.0
    ctx.settings = {"technical": {"oversold": 10.0, "overbought": 90.0}}
    assert technical.vote(ctx).details["rsi_c"] == pytest.approx((50 - 25) / 40)
    ctx.settings = {"technical": {"threshold": 2}}  # a new object: the agent's own oversold=25 still holds
    vote = technical.vote(ctx)
    assert vote.details["rsi_c"] == 1.0 and vote.action == "HOLD"
    ctx.settings = {"technical": {"bogus": 1}}
    with pytest.raises(ApplicationError):
        technical.vote(ctx)


def test_warming_up_features_make_agents_abstain():
    ctx = make_ctx(features={"rsi_14": math.nan})
    vote = agent("technical").vote(ctx)
    assert vote.abstained and vote.details["missing"] == ["rsi_14"]


# --- technical / trend / mean reversion / pattern ---------------------------------------------------


def test_technical_rsi_oversold_buys_overbought_sells():
    buy = agent("technical").vote(make_ctx(features={"rsi_14": 20.0, "bb_percent_b_20_2": 0.1}))
    sell = agent("technical").vote(make_ctx(features={"rsi_14": 80.0, "bb_percent_b_20_2": 0.9}))
    neutral = agent("technical").vote(make_ctx())
    assert buy.action == "BUY" and buy.confidence > 0.5
    assert sell.action == "SELL"
    assert neutral.action == "HOLD"


def test_technical_rsi_20_alone_biases_toward_buy():
    vote = agent("technical").vote(make_ctx(features={"rsi_14": 20.0}))
    assert vote.details["rsi_c"] == 1.0 and vote.details["score"] > 0


def test_technical_higher_timeframe_confirms_or_damps():
    f = {"rsi_14": 25.0, "bb_percent_b_20_2": 0.2}
    base = agent("technical").vote(make_ctx("1h", features=f)).details["score"]
    agree = agent("technical").vote(make_ctx("1h", features={**f, "rsi_14_1d": 35.0, "macd_hist_12_26_9_1d": 0.5}))
    against = agent("technical").vote(make_ctx("1h", features={**f, "rsi_14_1d": 75.0, "macd_hist_12_26_9_1d": -0.5}))
    assert agree.details["score"] > base > against.details["score"] > 0
    assert "agrees" in agree.reason and "disagrees" in against.reason


def test_trend_follows_aligned_averages_only_when_adx_is_strong():
    up = {"adx_14": 40.0, "plus_di_14": 30.0, "minus_di_14": 10.0, "ema_20": 105.0, "ema_50": 102.0, "sma_200": 95.0}
    vote = agent("trend").vote(make_ctx(features=up))
    assert vote.action == "BUY" and vote.confidence > 0.8
    down = {**up, "plus_di_14": 10.0, "minus_di_14": 30.0, "ema_20": 95.0, "ema_50": 98.0, "sma_200": 110.0}
    assert agent("trend").vote(make_ctx(features=down)).action == "SELL"
    weak = agent("trend").vote(make_ctx(features={**up, "adx_14": 12.0}))
    assert weak.action == "HOLD" and "no trend" in weak.reason


def test_mean_reversion_fades_extremes_and_trades_pairs():
    assert agent("mean_reversion").vote(make_ctx(features={"zscore_20": -2.5})).action == "BUY"
    assert agent("mean_reversion").vote(make_ctx(features={"zscore_20": 2.5})).action == "SELL"
    assert agent("mean_reversion").vote(make_ctx(features={"zscore_20": 0.5})).action == "HOLD"
    # pair: this instrument jumped 3 % against a partner it tracks -> rich -> SELL
    rng = np.random.default_rng(0)
    b = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 80)))
    a = b * np.exp(rng.normal(0, 0.002, 80))
    a[-1] *= 1.03
    assert spread_zscore(a, b, 60) > 3
    vote = agent("mean_reversion").vote(make_ctx(closes=a, pair={"symbol": "B", "closes": b}))
    assert vote.action == "SELL" and vote.details["partner"] == "B"
    # no z-score yet but a pair: the pair alone votes
    vote = agent("mean_reversion").vote(make_ctx(closes=a, features={"zscore_20": math.nan}, pair={"spread_z": -3.0}))
    assert vote.action == "BUY"


def test_pattern_reads_candles_in_context():
    bullish = agent("pattern").vote(make_ctx(features={"cdl_engulfing": 1.0, "zscore_20": -1.5}))
    assert bullish.action == "BUY" and bullish.confidence <= 0.6
    late = agent("pattern").vote(make_ctx(features={"cdl_engulfing": 1.0, "zscore_20": 1.5}))
    assert late.details["score"] < bullish.details["score"]
    assert agent("pattern").vote(make_ctx()).action == "HOLD"


# --- ml / regime / sentiment / fundamental ---------------------------------------------------------


def test_ml_turns_the_prediction_into_a_vote():
    up = agent("ml").vote(make_ctx(ml={"class": "up", "probabilities": {"down": 0.3, "up": 0.7}}))
    assert up.action == "BUY" and up.confidence == pytest.approx(0.4)
    assert agent("ml").vote(make_ctx(ml={"probabilities": {"down": 0.65, "up": 0.35}})).action == "SELL"
    coin = agent("ml").vote(make_ctx(ml={"probabilities": {"down": 0.49, "up": 0.51}}))
    assert coin.action == "HOLD"
    assert agent("ml").vote(make_ctx(ml=None)).abstained
    assert agent("ml").vote(make_ctx(ml={"probabilities": {"up": 0.9, "down": 0.1}, "no_edge": True})).abstained
    assert agent("ml").vote(make_ctx(ml={"prediction": 0.02})).action == "BUY"


def test_regime_scales_others_and_never_votes_a_direction():
    trending = agent("regime").vote(make_ctx(features={"adx_14": 35.0}))
    assert trending.action == "HOLD"
    assert trending.details["scale"]["trend"] > 1 > trending.details["scale"]["mean_reversion"]
    ranging = agent("regime").vote(make_ctx(features={"adx_14": 12.0}))
    assert ranging.details["scale"]["mean_reversion"] > 1 > ranging.details["scale"]["trend"]
    wild = agent("regime").vote(make_ctx(features={"volatility_20": 0.03, "volatility_100": 0.01}))
    assert "high-vol" in wild.details["regime"] and wild.details["scale"]["technical"] < 1


def test_sentiment_lexicon_scores_headlines_offline():
    assert score_headline("Acme beats estimates, shares surge to record") > 0.5
    assert score_headline("Acme plunges after profit warning and fraud probe") < -0.5
    assert score_headline("Acme fails to beat estimates") < 0
    assert score_headline("Acme not bullish on outlook") < 0
    assert score_headline("The meeting is on Tuesday") == 0
    buy = agent("sentiment").vote(make_ctx(headlines=["Acme soars on strong earnings", "Analysts upgrade Acme"]))
    assert buy.action == "BUY" and buy.details["source"] == "headlines"
    posted = agent("sentiment").vote(make_ctx(sentiment=-0.6, headlines=["Acme soars"]))
    assert posted.action == "SELL" and posted.details["source"] == "posted"
    assert agent("sentiment").vote(make_ctx()).abstained


def test_fundamental_from_posted_fundamentals():
    cheap = agent("fundamental").vote(make_ctx(fundamentals={"pe": 9.0, "earnings_surprise": 0.08}))
    assert cheap.action == "BUY"
    rich = agent("fundamental").vote(make_ctx(fundamentals={"pe": 60.0, "earnings_surprise": -0.06}))
    assert rich.action == "SELL"
    losses = agent("fundamental").vote(make_ctx(fundamentals={"pe": -5.0}))
    assert losses.details["components"]["value"] == -1.0
    odd = agent("fundamental").vote(make_ctx(fundamentals={"pe": "n/a"}))
    assert odd.abstained and odd.details["ignored"] == ["pe"]


# --- risk / sizing / cost --------------------------------------------------------------------------


def test_risk_vetoes_beyond_drawdown_but_lets_a_long_reduce():
    flat = agent("risk", max_drawdown=0.1).vote(make_ctx(position={"qty": 0, "drawdown": 0.15}))
    assert flat.veto and flat.details["veto_sides"] == ["BUY", "SELL"] and "drawdown" in flat.reason
    long = agent("risk", max_drawdown=0.1).vote(make_ctx(position={"qty": 5, "drawdown": 0.15}))
    assert long.veto and long.details["veto_sides"] == ["BUY"]
    ok = agent("risk", max_drawdown=0.1).vote(make_ctx(position={"qty": 0, "drawdown": 0.05}))
    assert not ok.veto and ok.size_cap == pytest.approx(0.25)


def test_risk_cuts_size_with_volatility_and_exposure_and_vetoes_illiquidity():
    cut = agent("risk").vote(make_ctx(features={"volatility_20": 0.02, "volatility_100": 0.01}))
    assert cut.size_cap == pytest.approx(0.125)
    headroom = agent("risk").vote(make_ctx(position={"qty": 1, "exposure": 0.9}))
    assert headroom.size_cap == pytest.approx(0.1)
    assert agent("risk").vote(make_ctx(position={"qty": 1, "exposure": 1.2})).veto
    assert agent("risk").vote(make_ctx(spread_bps=80.0)).veto


def test_capped_kelly():
    assert capped_kelly(0.5) == 0.0
    assert capped_kelly(0.45) == 0.0
    assert capped_kelly(0.6, payoff=1.0, fraction=0.25, cap=1.0) == pytest.approx(0.25 * 0.2)
    assert capped_kelly(0.6, payoff=2.0, fraction=1.0, cap=1.0) == pytest.approx(0.6 - 0.4 / 2)
    assert capped_kelly(0.99, fraction=1.0, cap=0.1) == 0.1


def test_sizing_defers_on_abnormal_spread_or_volatility():
    normal = agent("sizing").vote(make_ctx(spread_bps=3.0))
    assert normal.size_cap == pytest.approx(0.1) and not normal.details.get("defer")
    assert agent("sizing").vote(make_ctx(spread_bps=60.0)).size_cap == 0.0
    wild = agent("sizing").vote(make_ctx(features={"volatility_20": 0.04, "volatility_100": 0.01}))
    assert wild.size_cap == 0.0 and wild.details["defer"]
    vol = agent("sizing").vote(make_ctx(features={"volatility_20": 0.02, "volatility_100": 0.01}))
    assert vol.size_cap == pytest.approx(0.05)


def test_cost_agent_skips_edges_below_costs():
    # 1-bar volatility 2 bps: expected move ~1.6 bps cannot pay 5 + 5 fees + 2 + 2 slippage + spread
    tiny = agent("cost").vote(make_ctx(features={"volatility_20": 0.0002}))
    assert tiny.veto and "cannot pay" in tiny.reason
    # 1 % volatility: move ~80 bps, cost 16 bps -> break-even p = 0.5 + 16 / 160 = 0.6
    ok = agent("cost").vote(make_ctx(features={"volatility_20": 0.01}))
    move = 0.01 * math.sqrt(2 / math.pi) * 1e4
    assert not ok.veto and ok.details["breakeven_p"] == pytest.approx(0.5 + 16 / (2 * move))
    small_pred = agent("cost").vote(make_ctx(ml={"prediction": 0.0005}))
    assert small_pred.veto and "predicted move" in small_pred.reason


# --- portfolio -------------------------------------------------------------------------------------


def test_risk_parity_weights_sum_to_one_inverse_to_volatility():
    rng = np.random.default_rng(1)
    vols = np.array([0.01, 0.02, 0.04])
    returns = rng.standard_normal((5000, 3)) * vols
    w = risk_parity(returns)
    assert w.sum() == pytest.approx(1.0) and (w > 0).all()
    expected = (1 / vols) / (1 / vols).sum()
    assert np.allclose(w, expected, atol=0.01)
    assert np.allclose(inverse_volatility(returns), expected, atol=0.01)
    # with correlation, risk contributions are equal
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.2], [0.0, 0.2, 1.0]]) * np.outer(vols, vols)
    corr = rng.multivariate_normal(np.zeros(3), cov, 5000)
    w = risk_parity(corr, shrinkage=0.0)
    c = np.cov(corr, rowvar=False)
    contrib = w * (c @ w)
    assert np.allclose(contrib / contrib.sum(), 1 / 3, atol=1e-6)


def test_mean_variance_prefers_the_better_sharpe_and_respects_caps():
    rng = np.random.default_rng(2)
    returns = rng.standard_normal((2000, 3)) * 0.01 + np.array([0.002, 0.0, -0.001])
    w = mean_variance(returns, risk_aversion=5.0)
    assert w.sum() == pytest.approx(1.0) and (w >= -1e-12).all() and w.argmax() == 0
    capped = mean_variance(returns, risk_aversion=5.0, max_weight=0.5)
    assert capped.max() <= 0.5 + 1e-9 and capped.sum() == pytest.approx(1.0)
    out = allocate(returns, ["A", "B", "C"], "mean_variance", risk_aversion=5.0)
    assert list(out) == ["A", "B", "C"]


def test_allocate_errors_and_portfolio_agent_caps_size():
    with pytest.raises(ApplicationError):
        allocate([[0.01, 0.02]], ["A", "B"])
    with pytest.raises(ApplicationError):
        allocate(np.zeros((10, 2)) + [0.0, 0.01], ["A", "B"])
    with pytest.raises(ApplicationError):
        allocate(np.random.default_rng(0).standard_normal((10, 2)), ["A", "B"], "astrology")
    vote = agent("portfolio", weights={"TEST": 0.2}).vote(make_ctx())
    assert vote.size_cap == pytest.approx(0.2)
    assert agent("portfolio", weights={"OTHER": 0.2}).vote(make_ctx()).abstained
