"""The RL environment, learners, artifact and walk-forward honesty (pure NumPy; no database)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from api.errors import ApplicationError
from marketdata.synthetic import generate_bars
from models_registry.rl import artifact
from models_registry.rl.agents import ALGOS, Policy, run_policy
from models_registry.rl.env import StateSpec, TradingEnv, bar_returns
from models_registry.rl.evaluate import fit, walk_forward


def planted(n=1500, signal=0.1, seed=7):
    return generate_bars(n, seed=seed, planted_signal=signal, planted_lag=1)["close"].to_numpy()


def test_reward_is_next_bar_return_of_the_position_minus_fees():
    close = np.array([100.0, 110.0, 99.0, 99.0, 108.9])
    spec = StateSpec.fit(close, None, [], n_lags=1)
    env = TradingEnv(close, spec.market_states(close, None), positions=(-1, 0, 1), fee_bps=50)
    env.reset()
    _, r, _ = env.step(2)  # flat -> long over bar 0 -> 1: +10 % minus 1 unit of 0.5 %
    assert r == pytest.approx(0.10 - 0.005)
    _, r, _ = env.step(0)  # long -> short over 1 -> 2: -(-10 %) minus 2 units
    assert r == pytest.approx(0.10 - 0.010)
    _, r, done = env.step(0)  # stay short over 2 -> 3: 0 %, no fee
    assert r == pytest.approx(0.0) and not done
    _, r, done = env.step(1)  # short -> flat over 3 -> 4: nothing held, 1 unit of fee
    assert r == pytest.approx(-0.005) and done


def test_state_at_t_uses_no_later_bar():
    close = planted(300)
    feats = np.column_stack([bar_returns(close), np.arange(300.0)])
    spec = StateSpec.fit(close[:200], feats[:200], ["r", "i"], n_lags=3)
    before = spec.market_states(close, feats)
    changed_close, changed_feats = close.copy(), feats.copy()
    changed_close[151:] *= 1.7  # rewrite the future after bar 150
    changed_feats[151:] = -99.0
    after = spec.market_states(changed_close, changed_feats)
    np.testing.assert_array_equal(before[:151], after[:151])
    assert not np.array_equal(before[151], after[151])
    # the spec's scale is fitted on the window it is given only
    assert spec.ret_scale == pytest.approx(np.std(bar_returns(close[:200])[1:]))


def _random_oos(close, market, start, seeds=5):
    totals = []
    for s in range(seeds):
        rng = np.random.default_rng(100 + s)
        env = TradingEnv(close, market, start=start)
        env.reset()
        total, done = 0.0, False
        while not done:
            _, r, done = env.step(int(rng.integers(3)))
            total += r
        totals.append(total)
    return float(np.mean(totals))


@pytest.mark.parametrize("algo", ALGOS)
def test_each_algorithm_learns_a_planted_pattern_out_of_sample(algo):
    close = planted(signal=0.15)  # a day follows the previous day's direction with p = 0.65
    policy, curve = fit(close, None, [], algo=algo, episodes=15, seed=1, end=1000)
    assert len(curve) == 15
    env = TradingEnv(close, policy.spec.market_states(close, None), start=1000)
    rewards, positions = run_policy(policy, env)
    random_total = _random_oos(close, policy.spec.market_states(close, None), 1000)
    assert rewards.sum() > 0.2
    assert rewards.sum() > random_total + 0.2
    assert np.abs(positions).mean() > 0.3  # it trades the pattern, it does not sit flat
    # deterministic for a seed
    again, _ = fit(close, None, [], algo=algo, episodes=15, seed=1, end=1000)
    for k, v in policy.arrays.items():
        np.testing.assert_array_equal(v, again.arrays[k])


@pytest.mark.parametrize("algo", ALGOS)
def test_a_series_without_signal_is_called_no_edge(algo):
    close = planted(1000, signal=0.0, seed=11)
    _, report = walk_forward(close, algo=algo, episodes=8, seed=1)
    assert report["no_edge"] is True
    assert report["oos_bars"] == 499
    assert set(report["baselines"]) == {"buy_and_hold", "flat"}
    assert report["significance"]["p_value"] >= 0.05 or not report["beats_baselines"]


def test_a_planted_signal_is_found_out_of_sample_and_beats_the_baselines():
    close = planted()
    _, report = walk_forward(close, algo="q_learning", episodes=15, seed=1)
    assert report["no_edge"] is False
    assert report["oos"]["total_return"] > report["baselines"]["buy_and_hold"]["total_return"]
    assert report["oos"]["total_return"] > 0
    assert report["significance"]["p_value"] < 0.05
    # test blocks never overlap their training window
    for fold in report["folds_detail"]:
        assert fold["train_end"] == fold["test"][0]
    curves = report["curves"]
    assert len(curves["episode_reward"]) == 15
    assert len(curves["oos_equity"]) == len(curves["buy_and_hold_equity"]) <= 200


@pytest.mark.parametrize("algo", ALGOS)
def test_artifact_round_trip_acts_the_same(algo):
    close = planted(400)
    feats = np.column_stack([bar_returns(close), np.linspace(0, 1, 400)])
    policy, _ = fit(close, feats, ["r", "x"], algo=algo, episodes=2, seed=3)
    data = artifact.dump(policy)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["arrays.npz", "manifest.json"]
    loaded = artifact.load(data)
    assert loaded.algo == algo and loaded.spec.feature_names == ["r", "x"]
    market = loaded.spec.market_states(close, feats)
    np.testing.assert_array_equal(market, policy.spec.market_states(close, feats))
    for t in range(5, 400, 37):
        s = np.append(market[t], 1.0)
        np.testing.assert_allclose(loaded.values(s), policy.values(s))


def _rezip(manifest: dict, arrays: dict | None = None, raw_npz: bytes | None = None, extra: dict | None = None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        if raw_npz is None:
            npz = io.BytesIO()
            np.savez(npz, **arrays)
            raw_npz = npz.getvalue()
        zf.writestr("arrays.npz", raw_npz)
        for k, v in (extra or {}).items():
            zf.writestr(k, v)
    return buf.getvalue()


def test_artifact_refuses_anything_unexpected():
    close = planted(300)
    policy, _ = fit(close, None, [], algo="q_learning", episodes=1)
    data = artifact.dump(policy)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        with np.load(io.BytesIO(zf.read("arrays.npz"))) as npz:
            arrays = {k: npz[k] for k in npz.files}
    cases = [
        b"not a zip",
        _rezip(manifest, arrays, extra={"payload.pkl": b"x"}),
        _rezip({**manifest, "algo": "evil"}, arrays),
        _rezip({**manifest, "format": "automl-bundle"}, arrays),
        _rezip(manifest, {**arrays, "q": arrays["q"][:2]}),  # wrong shape
        _rezip(manifest, {**arrays, "q": np.array([object()] * 4, dtype=object)}),  # needs pickle
        _rezip(manifest, {**arrays, "extra": np.zeros(1)}),
    ]
    for bad in cases:
        with pytest.raises(ApplicationError) as err:
            artifact.load(bad)
        assert err.value.code == "invalid_artifact"
    assert isinstance(artifact.load(data), Policy)


def test_the_consensus_baseline_is_scored_like_the_policy_by_hand():
    from backtesting.engine import FLAT, KEEP, LONG, SHORT
    from models_registry.rl.evaluate import consensus_baseline

    close = np.array([100.0, 110.0, 99.0, 99.0, 108.9, 100.0])
    # bar 0 is before the out-of-sample block; from bar 1: long, keep, short, flat
    target = np.array([LONG, LONG, KEEP, SHORT, FLAT, KEEP])
    got = consensus_baseline(close, target, start=1, end=5, fee_bps=100, periods_per_year=1)
    # bar 1: enter long (fee 1 %), 110 -> 99: -10 %; bar 2: keep, 99 -> 99: 0; bar 3: long -> short
    # (fee 2 %), 99 -> 108.9: short loses 10 %; bar 4: short -> flat (fee 1 %)
    per_bar = [-0.10 - 0.01, 0.0, -0.10 - 0.02, -0.01]
    assert got["total_return"] == pytest.approx(np.prod(1 + np.array(per_bar)) - 1)
    long_flat = consensus_baseline(
        close, target, start=1, end=5, positions="long_flat", fee_bps=100, rl_total_return=0.0
    )
    # a short becomes flat: bar 3 exits the long (fee 1 %), bar 4 stays flat
    assert long_flat["total_return"] == pytest.approx((1 - 0.11) * 1.0 * (1 - 0.01) * 1.0 - 1)
    assert long_flat["rl_beats_it"] is True
