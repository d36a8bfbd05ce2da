"""The registry's batch values equal TA-Lib called directly (or, for our own indicators, a plain
window-by-window computation), and its warm-up lengths are the leading NaNs it produces."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib
from talib import abstract

from api.errors import ApplicationError
from features.indicators import CANDLE_PATTERNS, REGISTRY, get_indicator
from tests.features.factories import random_walk_bars

RTOL = 1e-9


def assert_same(actual, expected, *, label=""):
    """Equal NaN masks; values within 1e-9 relative (atol scaled to the series, for values near 0)."""
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{label}: NaN masks differ")
    ok = ~np.isnan(expected)
    scale = np.abs(expected[ok]).max() if ok.any() else 1.0
    np.testing.assert_allclose(actual[ok], expected[ok], rtol=RTOL, atol=1e-12 * max(scale, 1.0), err_msg=label)


@pytest.fixture(scope="module")
def bars():
    return random_walk_bars(3000, seed=11)


@pytest.fixture(scope="module")
def arrays(bars):
    return {c: bars[c].to_numpy() for c in bars.columns}


def compute(name, bars, params, outputs=None):
    indicator = get_indicator(name)
    outputs = outputs or indicator.output_keys
    frame = indicator.compute(bars, params, outputs)
    full = indicator.resolve(params)
    return {key: frame[indicator.column(key, full)].to_numpy() for key in outputs}


# --- TA-Lib parity -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [14, 2, 31])
def test_rsi_equals_talib(bars, arrays, length):
    assert_same(compute("rsi", bars, {"length": length})["rsi"], talib.RSI(arrays["close"], length), label="rsi")


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 4, 1)])
def test_macd_equals_talib(bars, arrays, fast, slow, signal):
    got = compute("macd", bars, {"fast": fast, "slow": slow, "signal": signal})
    macd, sig, hist = talib.MACD(arrays["close"], fast, slow, signal)
    assert_same(got["macd"], macd, label="macd")
    assert_same(got["signal"], sig, label="signal")
    assert_same(got["hist"], hist, label="hist")


@pytest.mark.parametrize(("length", "std"), [(20, 2.0), (10, 1.5), (5, 1.0)])
def test_bbands_equal_talib_and_derived_columns_follow_their_definition(bars, arrays, length, std):
    got = compute("bbands", bars, {"length": length, "std": std})
    upper, mid, lower = talib.BBANDS(arrays["close"], length, std, std, talib.MA_Type.SMA)
    assert_same(got["upper"], upper, label="upper")
    assert_same(got["middle"], mid, label="middle")
    assert_same(got["lower"], lower, label="lower")
    assert_same(got["percent_b"], (arrays["close"] - lower) / (upper - lower), label="percent_b")
    assert_same(got["width"], (upper - lower) / mid, label="width")


@pytest.mark.parametrize("length", [14, 1, 5])
def test_atr_equals_talib(bars, arrays, length):
    if length == 1:
        with pytest.raises(ApplicationError):
            compute("atr", bars, {"length": length})
        return
    got = compute("atr", bars, {"length": length})["atr"]
    assert_same(got, talib.ATR(arrays["high"], arrays["low"], arrays["close"], length), label="atr")


@pytest.mark.parametrize("length", [14, 2, 30])
def test_adx_and_directional_indices_equal_talib(bars, arrays, length):
    got = compute("adx", bars, {"length": length})
    h, lo, c = arrays["high"], arrays["low"], arrays["close"]
    assert_same(got["adx"], talib.ADX(h, lo, c, length), label="adx")
    assert_same(got["plus_di"], talib.PLUS_DI(h, lo, c, length), label="plus_di")
    assert_same(got["minus_di"], talib.MINUS_DI(h, lo, c, length), label="minus_di")


@pytest.mark.parametrize("length", [20, 2, 200])
def test_moving_averages_equal_talib(bars, arrays, length):
    assert_same(compute("sma", bars, {"length": length})["sma"], talib.SMA(arrays["close"], length), label="sma")
    assert_same(compute("ema", bars, {"length": length})["ema"], talib.EMA(arrays["close"], length), label="ema")


@pytest.mark.parametrize(("k", "d", "smooth_k"), [(14, 3, 3), (5, 4, 2), (9, 1, 1)])
def test_stoch_equals_talib_including_its_smoothing_parameter(bars, arrays, k, d, smooth_k):
    # given pandas-ta's TA-Lib path would pass d where TA-Lib expects the slow-%K period,
    # then only a direct call honours smooth_k: (5, 4, 2) would differ otherwise
    got = compute("stoch", bars, {"k": k, "d": d, "smooth_k": smooth_k})
    slow_k, slow_d = talib.STOCH(
        arrays["high"], arrays["low"], arrays["close"], k, smooth_k, talib.MA_Type.SMA, d, talib.MA_Type.SMA
    )
    assert_same(got["k"], slow_k, label="stoch k")
    assert_same(got["d"], slow_d, label="stoch d")


def test_obv_equals_talib(bars, arrays):
    assert_same(compute("obv", bars, {})["obv"], talib.OBV(arrays["close"], arrays["volume"]), label="obv")


@pytest.mark.parametrize("pattern", sorted(CANDLE_PATTERNS))
def test_candle_patterns_are_talib_signs_with_nan_warmup(bars, arrays, pattern):
    got = compute("cdl", bars, {"pattern": pattern})["cdl"]
    fn = CANDLE_PATTERNS[pattern]
    raw = getattr(talib, fn)(arrays["open"], arrays["high"], arrays["low"], arrays["close"])
    lookback = abstract.Function(fn).lookback
    expected = raw / 100.0
    expected[:lookback] = np.nan
    assert set(np.unique(raw)) <= {-100, 0, 100}
    assert_same(got, expected, label=pattern)
    assert set(np.unique(got[lookback:])) <= {-1.0, 0.0, 1.0}


def test_candle_patterns_fire_on_this_data():
    # the parity above would be vacuous if every pattern were always 0
    bars = random_walk_bars(20000, seed=5)
    fired = {
        p
        for p in ("engulfing", "doji", "harami", "hammer")
        if np.nanmax(np.abs(compute("cdl", bars, {"pattern": p})["cdl"])) == 1
    }
    assert fired == {"engulfing", "doji", "harami", "hammer"}


# --- our own definitions, against plain window-by-window computations ----------------------------


def _windows(x, n):
    return np.lib.stride_tricks.sliding_window_view(x, n)


@pytest.mark.parametrize(("kind", "length"), [("simple", 1), ("log", 1), ("simple", 5), ("log", 24)])
def test_returns_follow_their_definition(bars, arrays, kind, length):
    c = arrays["close"]
    ratio = np.full(len(c), np.nan)
    ratio[length:] = c[length:] / c[:-length]
    expected = np.log(ratio) if kind == "log" else ratio - 1.0
    assert_same(compute("returns", bars, {"kind": kind, "length": length})["returns"], expected, label="returns")


@pytest.mark.parametrize("length", [20, 2, 100])
def test_volatility_is_sample_std_of_log_returns(bars, arrays, length):
    r = np.log(arrays["close"][1:] / arrays["close"][:-1])
    expected = np.full(len(arrays["close"]), np.nan)
    expected[length:] = _windows(r, length).std(axis=1, ddof=1)
    assert_same(compute("volatility", bars, {"length": length})["volatility"], expected, label="volatility")


@pytest.mark.parametrize("length", [20, 2, 100])
def test_zscore_follows_its_definition(bars, arrays, length):
    c = arrays["close"]
    w = _windows(c, length)
    expected = np.full(len(c), np.nan)
    expected[length - 1 :] = (c[length - 1 :] - w.mean(axis=1)) / w.std(axis=1, ddof=1)
    assert_same(compute("zscore", bars, {"length": length})["zscore"], expected, label="zscore")


@pytest.mark.parametrize("length", [20, 1, 60])
def test_vwap_is_rolling_volume_weighted_typical_price(bars, arrays, length):
    # a window without volume (length 1 on a zero-volume bar) falls back to the mean typical price
    tp = (arrays["high"] + arrays["low"] + arrays["close"]) / 3.0
    v = arrays["volume"]
    expected = np.full(len(v), np.nan)
    expected[length - 1 :] = [
        math.fsum(a * b for a, b in zip(pw, vw, strict=True)) / math.fsum(vw) if vw.any() else pw.mean()
        for pw, vw in zip(_windows(tp, length), _windows(v, length), strict=True)
    ]
    assert_same(compute("vwap", bars, {"length": length})["vwap"], expected, label="vwap")


def test_flat_windows_give_defined_values_not_nan_or_inf():
    # given a halted instrument: 30 bars with o = h = l = c and no volume
    bars = random_walk_bars(2000, seed=3, flat_runs=True)
    c = bars["close"].to_numpy()
    flat_end = next(i for i in range(40, len(c)) if np.all(c[i - 29 : i + 1] == c[i]))
    for name, params, key, value in [
        ("zscore", {"length": 20}, "zscore", 0.0),
        ("bbands", {"length": 20}, "percent_b", 0.5),
        ("bbands", {"length": 20}, "width", 0.0),
        ("volatility", {"length": 20}, "volatility", 0.0),
        ("vwap", {"length": 20}, "vwap", c[flat_end]),
    ]:
        got = compute(name, bars, params, (key,))[key]
        assert got[flat_end] == pytest.approx(value, abs=1e-12), (name, key)
        assert np.isfinite(got[REGISTRY[name].warmup(REGISTRY[name].resolve(params), (key,)) :]).all(), name


# --- warm-up -------------------------------------------------------------------------------------

TALIB_LOOKBACK_CASES = [
    ("rsi", {"length": 14}, "rsi", ("RSI", {"timeperiod": 14})),
    (
        "macd",
        {"fast": 12, "slow": 26, "signal": 9},
        "signal",
        ("MACD", {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9}),
    ),
    ("bbands", {"length": 20, "std": 2.0}, "upper", ("BBANDS", {"timeperiod": 20})),
    ("atr", {"length": 14}, "atr", ("ATR", {"timeperiod": 14})),
    ("adx", {"length": 14}, "adx", ("ADX", {"timeperiod": 14})),
    ("adx", {"length": 14}, "plus_di", ("PLUS_DI", {"timeperiod": 14})),
    ("sma", {"length": 30}, "sma", ("SMA", {"timeperiod": 30})),
    ("ema", {"length": 30}, "ema", ("EMA", {"timeperiod": 30})),
    (
        "stoch",
        {"k": 14, "d": 3, "smooth_k": 3},
        "k",
        ("STOCH", {"fastk_period": 14, "slowk_period": 3, "slowd_period": 3}),
    ),
    (
        "stoch",
        {"k": 5, "d": 4, "smooth_k": 2},
        "d",
        ("STOCH", {"fastk_period": 5, "slowk_period": 2, "slowd_period": 4}),
    ),
    ("obv", {}, "obv", ("OBV", {})),
    ("cdl", {"pattern": "morningstar"}, "cdl", ("CDLMORNINGSTAR", {})),
]


@pytest.mark.parametrize(("name", "params", "key", "talib_fn"), TALIB_LOOKBACK_CASES)
def test_warmup_is_talibs_lookback(name, params, key, talib_fn):
    fn_name, fn_params = talib_fn
    fn = abstract.Function(fn_name)
    fn.set_parameters(fn_params)
    indicator = get_indicator(name)
    assert indicator.lookback(indicator.resolve(params))[key] == fn.lookback
    # the documented closed forms
    assert get_indicator("macd").warmup({"fast": 12, "slow": 26, "signal": 9}) == 26 + 9 - 2
    assert get_indicator("adx").warmup({"length": 14}) == 2 * 14 - 1
    assert get_indicator("bbands").warmup({"length": 20, "std": 2.0}) == 20 - 1
    assert get_indicator("atr").warmup({"length": 14}) == 14
    assert get_indicator("rsi").warmup({"length": 14}) == 14


WARMUP_CASES = [
    (name, params)
    for name, params in [
        ("rsi", {"length": 14}),
        ("rsi", {"length": 3}),
        ("macd", {}),
        ("macd", {"fast": 4, "slow": 9, "signal": 1}),
        ("bbands", {}),
        ("atr", {"length": 7}),
        ("adx", {"length": 14}),
        ("adx", {"length": 5}),
        ("sma", {"length": 50}),
        ("ema", {"length": 9}),
        ("stoch", {}),
        ("stoch", {"k": 5, "d": 4, "smooth_k": 2}),
        ("obv", {}),
        ("vwap", {"length": 30}),
        ("returns", {"length": 7}),
        ("volatility", {"length": 10}),
        ("zscore", {"length": 10}),
    ]
] + [("cdl", {"pattern": p}) for p in sorted(CANDLE_PATTERNS)]


@pytest.mark.parametrize(("name", "params"), WARMUP_CASES)
def test_warmup_equals_leading_nans_of_every_output(bars, name, params):
    indicator = get_indicator(name)
    full = indicator.resolve(params)
    values = compute(name, bars, params)
    for key, x in values.items():
        leading = int(np.argmax(~np.isnan(x)))
        assert leading == indicator.lookback(full)[key], (name, key)
        assert not np.isnan(x[leading:]).any(), (name, key)


@pytest.mark.parametrize("n", [0, 1, 5, 33, 34])
def test_short_history_is_all_warmup_not_an_error(n):
    bars = random_walk_bars(n, seed=1)
    for name, indicator in REGISTRY.items():
        params = indicator.resolve({})
        values = compute(name, bars, {})
        for key, x in values.items():
            assert len(x) == n
            warm = indicator.lookback(params)[key]
            assert np.isnan(x[: min(n, warm)]).all(), (name, key)
            assert not np.isnan(x[warm:]).any(), (name, key)


# --- the registry itself -------------------------------------------------------------------------


def test_column_names_follow_name_and_params_convention():
    assert get_indicator("ema").column("ema", {"length": 20}) == "ema_20"
    assert get_indicator("stoch").column("k", {"k": 14, "d": 3, "smooth_k": 3}) == "stoch_k_14_3_3"
    assert get_indicator("bbands").column("upper", {"length": 20, "std": 2.0}) == "bb_upper_20_2"
    assert get_indicator("bbands").column("width", {"length": 20, "std": 2.5}) == "bb_width_20_2.5"
    assert get_indicator("returns").column("returns", {"kind": "log", "length": 5}) == "returns_log_5"
    assert get_indicator("cdl").column("cdl", {"pattern": "3whitesoldiers"}) == "cdl_3whitesoldiers"
    assert get_indicator("obv").column("obv", {}) == "obv"


def test_compute_rejects_bad_parameters_with_their_path():
    with pytest.raises(ApplicationError) as exc:
        get_indicator("rsi").compute(random_walk_bars(50, 1), {"length": 1, "colour": "red"})
    assert exc.value.code == "invalid_params"
    paths = {e["path"] for e in exc.value.details["errors"]}
    assert paths == {"params.length", "params.colour"}


def test_compute_keeps_the_index(bars):
    frame = get_indicator("rsi").compute(bars)
    assert list(frame.columns) == ["rsi_14"]
    pd.testing.assert_index_equal(frame.index, bars.index)


# --- the direct TA-Lib shortcut ------------------------------------------------------------------

DIRECT_CASES = [(name, params) for name, params in WARMUP_CASES if REGISTRY[name].direct is not None]


def test_every_pandas_ta_backed_indicator_has_a_direct_twin():
    # the ones without a twin compute on the arrays already (no pandas-ta round trip to skip)
    without = {name for name, ind in REGISTRY.items() if ind.direct is None}
    assert without == {"adx", "stoch", "vwap", "volatility", "zscore"}


@pytest.mark.parametrize(("name", "params"), DIRECT_CASES)
@pytest.mark.parametrize("n", [3000, 40, 3, 0])
def test_direct_twin_is_bit_identical_to_the_pandas_ta_path(name, params, n):
    # given the same bars (flat runs included: zero ranges and zero volume)
    from features.indicators import Bars

    frame = random_walk_bars(n, seed=23, flat_runs=n > 100)
    indicator = get_indicator(name)
    full = indicator.resolve(params)
    # when computed through pandas-ta and through the direct TA-Lib call
    via_pandas_ta = indicator.values(Bars.from_frame(frame), full)
    direct = indicator.values(Bars.from_frame(frame), full, direct=True)
    # then every output is the same array, bit for bit (NaN where NaN)
    assert via_pandas_ta.keys() == direct.keys()
    for key in via_pandas_ta:
        np.testing.assert_array_equal(direct[key], via_pandas_ta[key], err_msg=f"{name}.{key}")
