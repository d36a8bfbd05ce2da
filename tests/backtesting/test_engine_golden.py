"""Golden cases worked by hand: they pin the broker's semantics (those of backtesting.py's
defaults for SmaCross: fills at the next open, all-in whole units sized on all but an epsilon of
the cash, commission on each side's notional, margin-account equity, an open trade left open)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from api.errors import ApplicationError
from backtesting.engine import KEEP, LONG, SHORT, BrokerConfig, run
from backtesting.services import backtest_run
from backtesting.strategies import STRATEGIES, strategy_get

# SMA(2) vs SMA(3) of these closes: crosses up at bar 3, down at bar 5 (worked out below)
CLOSE = [12.0, 11.0, 10.0, 13.0, 15.0, 9.0, 6.0, 8.0]
OPEN = [12.0, 11.5, 10.5, 12.0, 12.5, 14.0, 8.5, 7.0]


def _bars(open_=OPEN, close=CLOSE, low=None):
    o, c = np.array(open_), np.array(close)
    return pd.DataFrame(
        {
            "open": o,
            "high": np.maximum(o, c) + 0.5,
            "low": np.minimum(o, c) - 0.5 if low is None else np.array(low),
            "close": c,
            "volume": 1.0,
        },
        index=pd.date_range("2024-01-01", periods=len(c), freq="D", tz="UTC"),
    )


def _trades(bt):
    return [(t["entry_bar"], t["exit_bar"], t["entry_price"], t["exit_price"], t["size"]) for t in bt.trades_json()]


def test_the_signals_are_the_hand_worked_crosses():
    # sma2: -, 11.5, 10.5, 11.5, 14, 12, 7.5, 7 ; sma3: -, -, 11, 11.33, 12.67, 12.33, 10, 7.67
    target, start = strategy_get("sma_cross").run(_bars(), {"fast": 2, "slow": 3})
    assert start == 3  # both SMAs have a value on the bar before
    assert list(target) == [KEEP, KEEP, KEEP, LONG, KEEP, SHORT, KEEP, KEEP]


def test_sma_cross_without_commission():
    bt = backtest_run(_bars(), strategy="sma_cross", params={"fast": 2, "slow": 3}, mc_runs=0)
    # bar 4 open 12.5: 10,000 x (1 - eps) // 12.5 = 799 units (not 800); bar 6 open 8.5: the long
    # closes (-4 x 799 = -3,196 -> cash 6,804) and a short of 6,804 // 8.5 = 800 opens
    assert _trades(bt) == [(4, 6, 12.5, 8.5, 799.0)]
    assert bt.trades_json()[0]["pnl"] == pytest.approx(-3196.0)
    assert bt.result.open_trade["size"] == -800.0 and bt.result.open_trade["entry_price"] == 8.5
    equity = bt.result.equity.to_numpy()
    assert list(equity[:4]) == [10_000.0] * 4  # warm-up and signal bar: nothing held
    assert equity[4] == pytest.approx(10_000 + 799 * 2.5)  # close 15
    assert equity[6] == pytest.approx(6_804 + 800 * 2.5)  # short from 8.5, close 6
    assert bt.result.equity_final == pytest.approx(7_204.0)  # 6,804 + 800 x (8.5 - 8)
    assert bt.stats["trades"] == 1 and bt.stats["open_trade"] is True


def test_sma_cross_with_one_percent_commission_per_side():
    bt = backtest_run(_bars(), strategy="sma_cross", params={"fast": 2, "slow": 3},
                      broker=BrokerConfig(commission=0.01), mc_runs=0)  # fmt: skip
    # buy: a unit costs 12.5 + 1 % = 12.625 -> 792 units, 99.00 commission; sell at 8.5: 67.32
    # commission, cash 10,000 - 99 - 3,168 - 67.32 = 6,665.68; short 6,665.68 // 8.585 = 776,
    # 65.96 commission; final 6,599.72 + 776 x 0.5 = 6,987.72
    assert _trades(bt) == [(4, 6, 12.5, 8.5, 792.0)]
    t = bt.trades_json()[0]
    assert t["commission"] == pytest.approx(99.0 + 67.32) and t["pnl"] == pytest.approx(-3168 - 166.32)
    assert bt.result.open_trade["size"] == -776.0
    assert bt.result.equity_final == pytest.approx(6_987.72)


def test_fills_at_the_signal_bars_close():
    bt = backtest_run(_bars(), strategy="sma_cross", params={"fast": 2, "slow": 3},
                      broker=BrokerConfig(fill="close"), mc_runs=0)  # fmt: skip
    # buy 769 at close 13 (bar 3); at close 9 (bar 5) cash 10,000 - 4 x 769 = 6,924, short 769 at 9
    assert _trades(bt) == [(3, 5, 13.0, 9.0, 769.0)]
    assert bt.result.equity_final == pytest.approx(6_924 + 769 * 1.0)


def test_a_stop_loss_exits_at_its_level_or_at_a_gap_open_and_the_next_signal_still_trades():
    low = [11.5, 10.5, 9.5, 11.5, 12.0, 8.8, 5.5, 6.5]  # bar 4 stays above 11.25; bar 5 goes through
    bt = backtest_run(_bars(low=low), strategy="sma_cross", params={"fast": 2, "slow": 3},
                      broker=BrokerConfig(stop_loss=0.1), mc_runs=0)  # fmt: skip
    assert _trades(bt) == [(4, 5, 12.5, 11.25, 799.0)] and bt.trades_json()[0]["reason"] == "stop_loss"
    # flat at bar 6's open: the short is sized on 10,000 - 998.75 = 9,001.25 -> 1,058 units
    assert bt.result.open_trade["size"] == -1058.0
    assert bt.result.equity_final == pytest.approx(9_001.25 + 1058 * 0.5)
    opens = list(OPEN)
    opens[5] = 11.0  # bar 5 opens below the stop: the exit fills at that open
    gapped = backtest_run(_bars(open_=opens, low=low), strategy="sma_cross", params={"fast": 2, "slow": 3},
                          broker=BrokerConfig(stop_loss=0.1), mc_runs=0)  # fmt: skip
    assert _trades(gapped) == [(4, 5, 12.5, 11.0, 799.0)]


def test_stop_loss_is_assumed_first_when_a_bar_reaches_both_levels():
    bars = _bars()
    bars.loc[bars.index[4], ["high", "low"]] = [20.0, 5.0]  # the entry bar spans both levels
    bt = backtest_run(bars, strategy="sma_cross", params={"fast": 2, "slow": 3},
                      broker=BrokerConfig(stop_loss=0.1, take_profit=0.1), mc_runs=0)  # fmt: skip
    assert bt.trades_json()[0]["reason"] == "stop_loss" and bt.trades_json()[0]["exit_price"] == 11.25


def test_fractional_units_spend_the_whole_cash_and_shorts_can_be_turned_off():
    target = np.array([KEEP, LONG, KEEP, SHORT, KEEP], dtype=np.int8)
    bars = _bars(open_=[10, 10, 20, 20, 25], close=[10, 10, 20, 20, 25])
    r = run(bars, target, BrokerConfig(whole_units=False), start=0)
    assert r.trades["size"].iloc[0] == pytest.approx(500.0)  # all 10,000 at bar 2's open of 20
    r = run(bars, target, BrokerConfig(allow_short=False), start=0)
    # whole units: 9,999.99.. // 20 = 499; the SHORT signal only closes them, at bar 4's open of 25
    assert r.open_trade is None and r.equity_final == pytest.approx(10_000 + 499 * 5)


def test_slippage_moves_entries_and_exits_against_the_trader():
    target = np.array([KEEP, LONG, KEEP, SHORT, KEEP], dtype=np.int8)
    bars = _bars(open_=[10, 10, 20, 20, 25], close=[10, 10, 20, 20, 25])
    # 50 bps: buy at 20 x 1.005 = 20.1 -> 9,999.99.. // 20.1 = 497 units; sell at 25 x 0.995 = 24.875
    r = run(bars, target, BrokerConfig(slippage_bps=50, allow_short=False), start=0)
    t = r.trades.iloc[0]
    assert (t["entry_price"], t["exit_price"], t["size"]) == (pytest.approx(20.1), pytest.approx(24.875), 497.0)
    assert r.equity_final == pytest.approx(10_000 + 497 * 4.775)
    # 1 x ATR known before the bar: true ranges 1, 1, 10.5, 1, 5.5 (ATR(14) not ready: their mean
    # so far); bar 2 pays bar 1's 1.0 -> 21 (476 units), bar 4 pays bar 3's 13.5 / 4 -> 25 - 3.375
    r = run(bars, target, BrokerConfig(slippage_atr=1.0, allow_short=False), start=0)
    t = r.trades.iloc[0]
    assert (t["entry_price"], t["exit_price"], t["size"]) == (21.0, 21.625, 476.0)
    assert r.equity_final == pytest.approx(10_000 + 476 * 0.625)
    # a short pays it the other way: sells lower, buys back higher
    r = run(bars, np.array([KEEP, SHORT, KEEP, LONG, KEEP], dtype=np.int8), BrokerConfig(slippage_bps=50), start=0)
    t = r.trades.iloc[0]
    assert (t["entry_price"], t["exit_price"]) == (pytest.approx(19.9), pytest.approx(25.125))


def test_a_trade_can_lose_everything_and_the_run_stops():
    target = np.array([LONG, KEEP, KEEP, KEEP], dtype=np.int8)
    bars = _bars(open_=[10, 10, 1, 1], close=[10, 10, 0.5, 1])
    r = run(bars, target, BrokerConfig(leverage=4), start=0)
    assert list(r.equity.to_numpy()[2:]) == [0.0, 0.0] and r.trades["reason"].iloc[0] == "out_of_money"


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_no_strategy_looks_ahead(name):
    """Freqtrade's lookahead analysis in miniature: a signal at bar k never changes when the bars
    after k are cut off."""
    from marketdata.synthetic import generate_bars

    bars = generate_bars(600, timeframe="1h", seed=5)
    s = strategy_get(name)
    params = s.resolve({})
    full, start = s.run(bars, params)
    for k in range(start + 5, len(bars), 37):
        cut, _ = s.run(bars.iloc[: k + 1], params)
        assert np.array_equal(cut, full[: k + 1]), f"{name}: the signal at or before bar {k} used later bars"


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ApplicationError) as e:
        backtest_run(_bars(), strategy="sma_cross", params={"fast": 5, "slow": 20})
    assert e.value.code == "too_few_bars"
    with pytest.raises(ApplicationError) as e:
        backtest_run(_bars(), strategy="sma_crosss")
    assert e.value.code == "unknown_strategy"
    with pytest.raises(ApplicationError) as e:
        backtest_run(_bars(), strategy="sma_cross", params={"fast": "ten"})
    assert e.value.code == "invalid_param" and "fast" in e.value.details
    bars = _bars()
    bars.iloc[3, bars.columns.get_loc("close")] = np.nan
    with pytest.raises(ApplicationError) as e:
        backtest_run(bars, strategy="sma_cross", params={"fast": 2, "slow": 3})
    assert e.value.code == "invalid_bars" and e.value.details["row"] == 4
    with pytest.raises(ApplicationError) as e:
        BrokerConfig(commission=0.5, fill="tomorrow")
    assert e.value.code == "invalid_broker" and {"commission", "fill"} <= set(e.value.details)


def test_the_cli_prints_stats_trades_and_final_equity_as_json(tmp_path):
    path = tmp_path / "bars.csv"
    frame = _bars().reset_index(names="timestamp")
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    frame.to_csv(path, index=False)
    argv = [sys.executable, "manage.py", "backtest", "--input", str(path), "--strategy", "sma_cross",
            "--param", "fast=2", "--param", "slow=3", "--cash", "10000", "--commission", "0.01", "--json"]  # fmt: skip
    out = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    assert out["equity_final"] == pytest.approx(6_987.72)
    assert [(t["entry_price"], t["exit_price"], t["size"]) for t in out["trades"]] == [(12.5, 8.5, 792.0)]
    assert {"entry_time", "exit_time", "pnl"} <= set(out["trades"][0]) and out["stats"]["trades"] == 1
    bad = subprocess.run([*argv[:7], "--param", "fast=2", "--param", "slow=30"], capture_output=True, text=True)
    assert bad.returncode != 0 and "too_few_bars" in bad.stderr
