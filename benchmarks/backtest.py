"""Backtest speed (issue 8): SMA cross on 1,000,000 bars (target <= 0.5 s), a 100-combination
parameter sweep on the same bars (target <= 10 s), and the engine against backtesting.py on
200,000 bars and vectorbt on the 1,000,000 when Pythons with those libraries are given.

backtesting.py's import name clashes with our ``backtesting`` app, so the peer runs in its own
interpreter: set ``BACKTEST_PEER_PYTHON`` to a Python that has it (e.g. ``python3.12 -m venv
/tmp/peer && /tmp/peer/bin/pip install backtesting``); without it the comparison is skipped.
Both sides run the same SmaCross on the same bars, and the run checks they agree on final
equity and trade count. vectorbt (``BACKTEST_VBT_PYTHON``) is timed on the same signals with its
``Portfolio.from_signals`` (speed only: its fill and sizing conventions differ). Figures only,
never pass/fail. Run alone: ``python -m benchmarks.backtest``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

BARS = 1_000_000
PEER_BARS = 200_000

_PEER = r"""
import json, sys, time, warnings
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
warnings.filterwarnings("ignore")
def SMA(v, n): return pd.Series(v).rolling(n).mean()
df = pd.read_csv(sys.argv[1], index_col=0, parse_dates=True)
df.columns = [c.capitalize() for c in df.columns]
class SmaCross(Strategy):
    n1, n2 = 10, 20
    def init(self):
        self.s1 = self.I(SMA, self.data.Close, self.n1)
        self.s2 = self.I(SMA, self.data.Close, self.n2)
    def next(self):
        if crossover(self.s1, self.s2): self.position.close(); self.buy()
        elif crossover(self.s2, self.s1): self.position.close(); self.sell()
t = time.perf_counter()
stats = Backtest(df, SmaCross, cash=10_000).run()
print(json.dumps({"seconds": time.perf_counter() - t, "equity_final": float(stats["Equity Final [$]"]),
                  "trades": int(stats["# Trades"])}))
"""


_VBT = r"""
import json, sys, time, warnings
import numpy as np, pandas as pd
import vectorbt as vbt
warnings.filterwarnings("ignore")
df = pd.read_csv(sys.argv[1], index_col=0, parse_dates=True)
close = df["close"]
def once():
    fast, slow = close.rolling(10).mean(), close.rolling(20).mean()
    up = (fast > slow) & (fast.shift(1) < slow.shift(1))
    down = (fast < slow) & (fast.shift(1) > slow.shift(1))
    pf = vbt.Portfolio.from_signals(close, entries=up, exits=down, short_entries=down, short_exits=up,
                                    price=df["open"].shift(-1), init_cash=10_000, freq="1min")
    return pf.final_value()
once()  # numba compile
best = min((lambda t: (once(), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(3))
print(json.dumps({"seconds": best}))
"""


def _timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_backtest() -> None:
    import django

    django.setup()
    import numpy as np

    from backtesting.engine import BrokerConfig, run
    from backtesting.strategies import strategy_get
    from marketdata.synthetic import generate_bars

    bars = generate_bars(BARS, timeframe="1m", seed=7)
    sma = strategy_get("sma_cross")
    broker = BrokerConfig()  # no fees: a run that goes bust stops early and would time less
    t = time.perf_counter()
    run(bars.iloc[:100], *sma.run(bars.iloc[:100], {"fast": 2, "slow": 3})[:1], broker)  # compile / load cache
    compile_s = time.perf_counter() - t

    def one():
        target, start = sma.run(bars, {"fast": 10, "slow": 20})
        return run(bars, target, broker, start=start)

    seconds, result = _timed(one)
    seconds_one = seconds
    signal_s, _ = _timed(lambda: sma.run(bars, {"fast": 10, "slow": 20}))
    print(
        f"backtest sma_cross 10/20 on {BARS:,} bars: {seconds:.3f} s (signals {signal_s:.3f} s, "
        f"simulation {seconds - signal_s:.3f} s; target <= 0.5 s); {len(result.trades):,} trades; "
        f"first call incl. numba compile/cache load {compile_s:.2f} s",
        flush=True,
    )

    # sweep: 10 fast x 10 slow windows; each SMA computed once, each combination one simulation
    fasts, slows = range(5, 55, 5), range(60, 260, 20)
    close = bars["close"].to_numpy(dtype=np.float64)
    from backtesting.strategies import _crossing, _sma

    def sweep():
        cache = {n: _sma(close, n) for n in {*fasts, *slows}}
        best = None
        for f in fasts:
            for s in slows:
                target, start = _crossing(cache[f], cache[s])
                r = run(bars, target, broker, start=start)
                if best is None or r.equity_final > best[0]:
                    best = (r.equity_final, f, s)
        return best

    seconds, best = _timed(sweep, repeat=1)
    print(
        f"sweep sma_cross {len(fasts) * len(slows)} combinations on {BARS:,} bars: {seconds:.2f} s "
        f"(target <= 10 s); best final equity {best[0]:,.0f} at fast {best[1]}, slow {best[2]}",
        flush=True,
    )

    vbt = os.environ.get("BACKTEST_VBT_PYTHON")
    if vbt:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bars.csv")
            bars[["open", "high", "low", "close"]].to_csv(path, float_format="%.17g")
            done = subprocess.run([vbt, "-c", _VBT, path], capture_output=True, text=True, timeout=1800, cwd=tmp)
        if done.returncode == 0:
            theirs = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
            print(
                f"vs vectorbt from_signals on {BARS:,} bars (signals + simulation, warm): ours {seconds_one:.3f} s, "
                f"vectorbt {theirs:.3f} s -> ours takes {seconds_one / theirs:.2f}x its time (target <= 3x)",
                flush=True,
            )
        else:
            print(f"vectorbt run failed: {done.stderr.strip()[-300:]}", flush=True)
    else:
        print("vectorbt comparison skipped: set BACKTEST_VBT_PYTHON to a Python that has vectorbt", flush=True)
    peer = os.environ.get("BACKTEST_PEER_PYTHON")
    if not peer:
        print("backtesting.py comparison skipped: set BACKTEST_PEER_PYTHON to a Python that has it", flush=True)
        return
    small = bars.iloc[:PEER_BARS]
    ours_s, ours = _timed(lambda: run(small, *sma.run(small, {"fast": 10, "slow": 20})[:1], broker,
                                      start=sma.run(small, {"fast": 10, "slow": 20})[1]))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bars.csv")  # CSV at full float precision: the same prices on both sides
        small[["open", "high", "low", "close", "volume"]].to_csv(path, float_format="%.17g")
        done = subprocess.run([peer, "-c", _PEER, path], capture_output=True, text=True, timeout=1800, cwd=tmp)
    if done.returncode != 0:
        print(f"backtesting.py run failed: {done.stderr.strip()[-300:]}", flush=True)
        return
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    same = abs(theirs["equity_final"] - ours.equity_final) < 1e-6 and theirs["trades"] == len(ours.trades)
    print(
        f"vs backtesting.py on {PEER_BARS:,} bars: ours {ours_s:.3f} s, theirs {theirs['seconds']:.2f} s -> "
        f"{theirs['seconds'] / ours_s:.0f}x faster (target >= 50x); final equity {ours.equity_final:,.2f} vs "
        f"{theirs['equity_final']:,.2f}, trades {len(ours.trades)} vs {theirs['trades']}: "
        f"{'identical' if same else 'DIFFERENT'}",
        flush=True,
    )


if __name__ == "__main__":
    bench_backtest()
