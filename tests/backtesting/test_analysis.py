"""Bias checks: a strategy that peeks at the next bar is caught by the lookahead analysis; the
built-ins are not; the recursive analysis sees EMA signals drift with a short start-up and SMA
signals not at all."""

import json
import subprocess
import sys

import numpy as np
import pytest

from backtesting.analysis import lookahead_analysis, recursive_analysis
from backtesting.engine import KEEP, LONG, SHORT
from backtesting.strategies import Param, Strategy
from marketdata.synthetic import generate_bars


def _peeking(bars, *, n):
    close = bars["close"].to_numpy()
    target = np.full(len(close), KEEP, dtype=np.int8)
    nxt = np.append(close[1:], np.nan)  # tomorrow's close: not knowable today
    target[nxt > close] = LONG
    target[nxt < close] = SHORT
    return target, n


PEEK = Strategy("peek", "peeks at the next close", {"n": Param(1, 1, 10)}, _peeking)


@pytest.fixture(scope="module")
def bars():
    return generate_bars(3000, timeframe="1h", seed=21)


def test_a_strategy_that_reads_the_next_bar_is_flagged(bars):
    report = lookahead_analysis(bars, strategy=PEEK, checkpoints=10)
    assert report["biased"] and report["changes"][0]["bar"] == report["changes"][0]["cut_after_bar"]
    assert "lookahead bias" in report["verdict"]


def test_the_built_ins_have_no_lookahead(bars):
    for name in ("sma_cross", "ema_cross", "macd", "rsi_reversion", "bollinger_breakout"):
        assert not lookahead_analysis(bars, strategy=name, checkpoints=8)["biased"], name


def test_recursive_analysis_tells_converged_from_start_up_dependent_signals(bars):
    sma = recursive_analysis(bars, strategy="sma_cross", params={"fast": 10, "slow": 50})
    assert sma["converged_at"] == 100 and all(r["differing_pct"] == 0 for r in sma["startups"])
    rsi = recursive_analysis(bars, strategy="rsi_reversion", startups=(16, 30, 100, 2000))
    differing = [r["differing_pct"] for r in rsi["startups"]]
    assert differing[0] > 0 and differing[-1] == 0 and rsi["converged_at"] in (30, 100, 2000)


def test_the_command_reports_and_fails_on_bias(tmp_path, bars):
    path = tmp_path / "bars.csv"
    frame = bars.reset_index(names="timestamp")
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    frame.to_csv(path, index=False)
    argv = [sys.executable, "manage.py", "backtest_analysis", "--input", str(path), "--strategy", "sma_cross",
            "--checkpoints", "5", "--json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["lookahead"]["biased"] is False and out["recursive"]["startups"]
