"""The incremental engine equals the batch engine after warm-up (and says None before it), batch
features never look ahead, and higher-timeframe features see only completed higher bars."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from api.errors import ApplicationError
from features.engine import IncrementalEngine, compute_batch
from features.indicators import CANDLE_PATTERNS
from features.spec import DEFAULT_SPEC, FeatureSpec
from tests.features.factories import random_walk_bars, stream_rows

EVERYTHING = FeatureSpec.from_json(
    {
        "features": [
            {"indicator": "rsi", "lags": [1, 2], "transforms": ["diff"]},
            {"indicator": "rsi", "params": {"length": 5}},
            {"indicator": "macd", "lags": [3]},
            {"indicator": "macd", "params": {"fast": 5, "slow": 35, "signal": 5}, "outputs": ["hist"]},
            {"indicator": "bbands", "outputs": ["upper", "middle", "lower", "percent_b", "width"]},
            {"indicator": "bbands", "params": {"length": 10, "std": 1.5}, "outputs": ["width", "percent_b"]},
            {"indicator": "atr", "transforms": ["diff"]},
            {"indicator": "adx", "outputs": ["minus_di", "adx", "plus_di"]},
            {"indicator": "sma", "params": {"length": 50}},
            {"indicator": "ema", "params": {"length": 9}},
            {"indicator": "stoch"},
            {"indicator": "stoch", "params": {"k": 5, "d": 4, "smooth_k": 2}},
            {"indicator": "obv", "transforms": ["diff"]},
            {"indicator": "vwap"},
            {"indicator": "returns", "params": {"kind": "log", "length": 3}},
            {"indicator": "returns"},
            {"indicator": "volatility"},
            {"indicator": "zscore", "lags": [1]},
            *({"indicator": "cdl", "params": {"pattern": p}} for p in sorted(CANDLE_PATTERNS)),
            {"indicator": "rsi", "timeframe": "1d", "lags": [1]},
            {"indicator": "bbands", "timeframe": "4h", "outputs": ["percent_b"]},
            {"indicator": "adx", "timeframe": "1d", "outputs": ["adx", "plus_di"]},
            {"indicator": "vwap", "timeframe": "4h", "params": {"length": 6}},
        ]
    }
)


def assert_rows_equal_batch(rows, batch: pd.DataFrame, warmup: int):
    """None for exactly the first `warmup` bars; then no NaN and <= 1e-9 relative to batch."""
    assert all(r is None for r in rows[:warmup])
    assert all(r is not None for r in rows[warmup:])
    streamed = np.array(rows[warmup:], dtype=float)
    expected = batch.to_numpy()[warmup:]
    assert not np.isnan(streamed).any()
    assert not np.isnan(expected).any()
    for j, col in enumerate(batch.columns):
        scale = max(1.0, float(np.abs(expected[:, j]).max()))
        np.testing.assert_allclose(streamed[:, j], expected[:, j], rtol=1e-9, atol=1e-12 * scale, err_msg=col)


# --- streaming == batch --------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "start"), [(1, "2024-01-01 00:00"), (2, "2024-03-05 01:00"), (3, "2023-12-31 17:00")])
def test_incremental_equals_batch_for_every_indicator_and_timeframe(seed, start):
    # given 20k hourly bars (833 days), a spec with every indicator, lags, diff and 4h/1d features
    bars = random_walk_bars(20_000, seed, start=start)
    batch = compute_batch(bars, EVERYTHING, "1h")
    engine = IncrementalEngine(EVERYTHING, "1h")
    # when the same bars are streamed one by one
    rows = stream_rows(engine, bars)
    # then the vectors equal the batch rows, and none is emitted before the warm-up is over
    assert engine.warmup == EVERYTHING.warmup("1h")
    assert_rows_equal_batch(rows, batch, engine.warmup)


def test_direct_batch_is_bit_identical_to_the_pandas_ta_batch():
    # given every indicator, lags, transforms and higher-timeframe features on 5k hourly bars
    bars = random_walk_bars(5_000, 4, start="2024-02-29 05:00")
    # when computed with the direct TA-Lib calls (the request path) and through pandas-ta
    direct = compute_batch(bars, EVERYTHING, "1h", direct=True)
    # then the frames are the same, bit for bit
    pd.testing.assert_frame_equal(direct, compute_batch(bars, EVERYTHING, "1h"), check_exact=True)


def test_incremental_default_set_stays_equal_over_100k_bars():
    # running sums would drift over a long stream; TA-Lib's and ours must drift identically, or not at all
    bars = random_walk_bars(100_000, seed=9, freq="1min")
    engine = IncrementalEngine(DEFAULT_SPEC, "1m")
    rows = stream_rows(engine, bars)
    assert engine.warmup == 33
    assert_rows_equal_batch(rows, compute_batch(bars, DEFAULT_SPEC, "1m"), 33)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flat_runs": True},  # halted instrument: flat windows, zero volume
        {"scale": 1e-5, "flat_runs": True},  # sub-cent quotes: TA-Lib's zero tests must not fire
        {"scale": 50_000.0, "vol": 0.0005},  # high price, low volatility: cancellation-prone variance
    ],
)
def test_incremental_equals_batch_on_degenerate_data(kwargs):
    bars = random_walk_bars(6_000, seed=4, **kwargs)
    engine = IncrementalEngine(EVERYTHING, "1h")
    assert_rows_equal_batch(stream_rows(engine, bars), compute_batch(bars, EVERYTHING, "1h"), engine.warmup)


def test_as_dict_and_datetime_timestamps():
    bars = random_walk_bars(60, seed=1)
    engine = IncrementalEngine(DEFAULT_SPEC, "1h", as_dict=True)
    out = None
    for ts, row in zip(bars.index, bars.itertuples(index=False), strict=True):
        out = engine.update(ts.to_pydatetime(), *row)
    expected = compute_batch(bars, DEFAULT_SPEC, "1h").iloc[-1]
    assert list(out) == DEFAULT_SPEC.columns()
    assert out["rsi_14"] == pytest.approx(expected["rsi_14"], rel=1e-12)
    assert engine.ready and engine.bars_seen == 60


# --- no lookahead --------------------------------------------------------------------------------


def test_batch_features_on_truncated_history_equal_full_history_features():
    # given features of every indicator computed on the full history
    bars = random_walk_bars(2_400, seed=21, start="2024-01-01 03:00")
    full = compute_batch(bars, EVERYTHING, "1h")
    rng = np.random.default_rng(0)
    cuts = sorted({*rng.integers(1, len(bars), 30).tolist(), 1, 23, 24, 25, 47, 48, len(bars) - 1})
    for t in cuts:
        # when the data ends at bar t (the future is unknown) ...
        truncated = compute_batch(bars.iloc[:t], EVERYTHING, "1h")
        # then every value up to t is exactly what the full history gave
        pd.testing.assert_frame_equal(truncated, full.iloc[:t], check_exact=True, obj=f"cut at {t}")


def test_changing_the_future_changes_no_past_feature():
    bars = random_walk_bars(1_500, seed=22)
    future = bars.copy()
    t = 1_000
    future.iloc[t:, :4] *= 1.5  # a crash after t
    a = compute_batch(bars, EVERYTHING, "1h")
    b = compute_batch(future, EVERYTHING, "1h")
    pd.testing.assert_frame_equal(a.iloc[:t], b.iloc[:t], check_exact=True)


# --- higher timeframes: exact semantics ----------------------------------------------------------

SMA2_DAILY = FeatureSpec.from_json({"features": [{"indicator": "sma", "params": {"length": 2}, "timeframe": "1d"}]})


def expected_daily_sma2(bars: pd.DataFrame) -> np.ndarray:
    """By hand: a day is complete once a bar closes at or after midnight; the first day is dropped
    when the data starts after its 00:00."""
    days = bars.index.floor("1D")
    first_day = days[0] if bars.index[0] == days[0] else days[0] + pd.Timedelta("1D")
    closes = bars["close"].groupby(days).last()
    closes = closes[closes.index >= first_day]
    out = []
    for ts in bars.index:
        close_time = ts + pd.Timedelta("1h")
        done = closes[closes.index + pd.Timedelta("1D") <= close_time]
        out.append(done.iloc[-2:].mean() if len(done) >= 2 else np.nan)
    return np.array(out)


@pytest.mark.parametrize("start", ["2024-01-01 00:00", "2024-01-01 05:00"])
def test_daily_feature_on_hourly_bars_sees_a_day_only_once_it_is_complete(start):
    bars = random_walk_bars(24 * 8, seed=3, start=start)
    expected = expected_daily_sma2(bars)
    batch = compute_batch(bars, SMA2_DAILY, "1h")["sma_2_1d"].to_numpy()
    np.testing.assert_allclose(batch, expected, rtol=1e-12)
    # the 23:00 bar closes at midnight: it is the first to see its own day
    at_23 = np.flatnonzero((bars.index.hour == 23) & ~np.isnan(batch))[0]
    assert batch[at_23] != batch[at_23 - 1]
    assert batch[at_23] == batch[at_23 + 1]
    engine = IncrementalEngine(SMA2_DAILY, "1h")
    rows = stream_rows(engine, bars)
    streamed = np.array([np.nan if r is None else r[0] for r in rows])
    valid = ~np.isnan(expected)
    np.testing.assert_allclose(streamed[engine.warmup :], expected[engine.warmup :], rtol=1e-12)
    assert engine.warmup >= int(np.argmax(valid))  # the declared warm-up is a bound ...
    if start.endswith("05:00"):
        # ... 4 bars short of the worst case (data starting at 01:00): SMA(2) has warm-up 1 daily bar
        assert int(np.argmax(valid)) == (1 + 2) * 24 - 2 - 4 == engine.warmup - 4


def test_worst_case_alignment_reaches_the_declared_warmup_exactly():
    spec = FeatureSpec.from_json({"features": [{"indicator": "rsi", "timeframe": "1d"}]})
    bars = random_walk_bars(24 * 30, seed=2, start="2024-01-01 01:00")  # one base bar into a day
    col = compute_batch(bars, spec, "1h")["rsi_14_1d"].to_numpy()
    assert int(np.argmax(~np.isnan(col))) == spec.warmup("1h") == (14 + 2) * 24 - 2


def test_a_day_with_missing_bars_completes_when_its_time_is_up():
    # given hourly bars where 22:00 is day 3's last bar and day 4 starts at 03:00 (a gap)
    bars = random_walk_bars(24 * 8, seed=5)
    day3_last = pd.Timestamp("2024-01-04 23:00", tz="UTC")
    gap = (bars.index == day3_last) | (
        (bars.index >= pd.Timestamp("2024-01-05 00:00", tz="UTC"))
        & (bars.index < pd.Timestamp("2024-01-05 03:00", tz="UTC"))
    )
    bars = bars[~gap]
    batch = compute_batch(bars, SMA2_DAILY, "1h")["sma_2_1d"]
    np.testing.assert_allclose(batch.to_numpy(), expected_daily_sma2(bars), rtol=1e-12)
    day3 = bars.loc["2024-01-04", "close"]
    day2 = bars.loc["2024-01-03", "close"]
    # then the 22:00 bar (closing 23:00) still sees day 2, and day 4's first bar sees day 3
    assert batch.loc[pd.Timestamp("2024-01-04 22:00", tz="UTC")] == pytest.approx(
        (bars.loc["2024-01-02", "close"].iloc[-1] + day2.iloc[-1]) / 2
    )
    assert batch.loc[pd.Timestamp("2024-01-05 03:00", tz="UTC")] == pytest.approx((day2.iloc[-1] + day3.iloc[-1]) / 2)
    rows = stream_rows(IncrementalEngine(SMA2_DAILY, "1h"), bars)
    streamed = np.array([np.nan if r is None else r[0] for r in rows])
    w = SMA2_DAILY.warmup("1h")
    np.testing.assert_allclose(streamed[w:], batch.to_numpy()[w:], rtol=1e-12)


# --- rejected input ------------------------------------------------------------------------------


def test_engine_rejects_bad_bars_without_corrupting_its_state():
    bars = random_walk_bars(200, seed=8)
    engine = IncrementalEngine(DEFAULT_SPEC, "1h")
    seconds = bars.index.as_unit("s").asi8.tolist()
    rows = []
    for i, (t, row) in enumerate(zip(seconds, bars.itertuples(index=False), strict=True)):
        if i == 100:
            with pytest.raises(ApplicationError) as exc:
                engine.update(t - 3600, *row)  # a replayed, older bar
            assert exc.value.code == "bar_out_of_order"
            with pytest.raises(ApplicationError) as exc:
                engine.update(t, row.open, row.high, row.low, float("nan"), row.volume)
            assert exc.value.code == "invalid_bar"
            with pytest.raises(ApplicationError):
                engine.update(t, row.open, row.high, row.low, row.close, -1.0)
        rows.append(engine.update(t, *row))
    assert_rows_equal_batch(rows, compute_batch(bars, DEFAULT_SPEC, "1h"), 33)


def test_engine_with_higher_timeframes_needs_bars_on_the_grid():
    engine = IncrementalEngine(SMA2_DAILY, "1h")
    with pytest.raises(ApplicationError) as exc:
        engine.update(dt.datetime(2024, 1, 1, 0, 30, tzinfo=dt.UTC), 1.0, 1.0, 1.0, 1.0, 1.0)
    assert exc.value.code == "invalid_bar"


@pytest.mark.parametrize(
    ("mangle", "fragment"),
    [
        (lambda b: b.drop(columns=["volume"]), "missing column(s) volume"),
        (lambda b: b.iloc[::-1], "strictly increasing"),
        (lambda b: b.reset_index(drop=True), "DatetimeIndex"),
        (lambda b: b.assign(close=np.where(np.arange(len(b)) == 7, np.nan, b["close"])), "close must be finite"),
        (lambda b: b.assign(low=-b["low"]), "low must be finite and > 0"),
    ],
)
def test_compute_batch_rejects_bad_bars_with_a_clear_message(mangle, fragment):
    with pytest.raises(ApplicationError) as exc:
        compute_batch(mangle(random_walk_bars(50, seed=1)), DEFAULT_SPEC, "1h")
    assert exc.value.code == "invalid_bars"
    assert fragment in exc.value.message


def test_compute_batch_checks_the_spec_against_the_base_timeframe():
    bars = random_walk_bars(50, seed=1)
    with pytest.raises(ApplicationError) as exc:
        compute_batch(bars, FeatureSpec.from_json({"features": [{"indicator": "rsi", "timeframe": "5m"}]}), "1h")
    assert exc.value.code == "invalid_spec"
    misaligned = bars.set_axis(bars.index + pd.Timedelta("30min"))
    with pytest.raises(ApplicationError) as exc:
        compute_batch(misaligned, SMA2_DAILY, "1h")
    assert "aligned" in exc.value.message


def test_naive_timestamps_are_utc_and_empty_input_is_fine():
    bars = random_walk_bars(200, seed=1)
    naive = bars.tz_localize(None)
    pd.testing.assert_frame_equal(
        compute_batch(naive, EVERYTHING, "1h").reset_index(drop=True),
        compute_batch(bars, EVERYTHING, "1h").reset_index(drop=True),
    )
    empty = compute_batch(bars.iloc[:0], EVERYTHING, "1h")
    assert list(empty.columns) == EVERYTHING.columns() and len(empty) == 0
