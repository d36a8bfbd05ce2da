"""``manage.py backtest``: a built-in strategy on a file of bars, offline (no tenant, no database)."""

from __future__ import annotations

import json

import numpy as np
from django.core.management.base import CommandError

from api.errors import ApplicationError
from ops.commands import OfflineCommand

HELP = """Backtest a built-in strategy on a file of OHLCV bars, offline: no tenant or database needed.

Input (.csv or .parquet) needs the columns timestamp, open, high, low, close, volume (timestamp
is each bar's open time, ISO 8601 or epoch seconds, in increasing order).

A signal decided at a bar's close fills at the next bar's open (--fill next_open, the default)
or at that close (--fill close). Commission is a fraction of notional per side (0.001 = 0.1 %).
With whole units and all-in sizing, sma_cross gives the same trades and final equity as
backtesting.py's SmaCross example with its defaults.

Example:
  manage.py backtest --input btc_1h.csv --strategy sma_cross --param fast=10 --param slow=20 \\
      --cash 10000 --commission 0.001 --json
"""


SUMMARY = (
    "equity_final", "return_pct", "buy_and_hold_return_pct", "annual_return_pct", "sharpe", "sortino",
    "max_drawdown_pct", "trades", "win_rate_pct", "profit_factor", "sqn", "exposure_pct",
)  # fmt: skip


class Command(OfflineCommand):
    help = HELP

    def add_arguments(self, parser):
        from backtesting.engine import FILLS, SIZINGS
        from backtesting.strategies import STRATEGIES
        from backtesting.sweep import HOLDOUT

        parser.add_argument("--input", required=True, metavar="FILE", help="bars: .csv or .parquet")
        parser.add_argument("--strategy", required=True, choices=list(STRATEGIES))
        parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="strategy parameter")
        parser.add_argument("--cash", type=float, default=10_000.0)
        parser.add_argument("--commission", type=float, default=0.0, help="fraction of notional per side")
        parser.add_argument("--commission-fixed", type=float, default=0.0, help="cash per side")
        parser.add_argument("--spread", type=float, default=0.0, help="fraction of price paid on entry")
        parser.add_argument("--slippage-bps", type=float, default=0.0, help="basis points per fill, against you")
        parser.add_argument("--slippage-atr", type=float, default=0.0, help="multiples of ATR(14) per fill")
        parser.add_argument("--fill", choices=FILLS, default="next_open")
        parser.add_argument("--sizing", choices=SIZINGS, default="all_in")
        parser.add_argument("--fraction", type=float, help="fraction of margin per trade (fixed_fraction)")
        parser.add_argument("--risk", type=float, default=0.01, help="equity lost at the stop (risk sizing)")
        parser.add_argument("--stop-loss", type=float, help="fraction of the entry price")
        parser.add_argument("--take-profit", type=float, help="fraction of the entry price")
        parser.add_argument("--leverage", type=float, default=1.0)
        parser.add_argument("--fractional", action="store_true", help="fractional units (default: whole)")
        parser.add_argument("--no-short", action="store_true", help="short signals go flat")
        parser.add_argument("--close-at-end", action="store_true", help="close an open trade at the last close")
        parser.add_argument(
            "--grid",
            action="append",
            default=[],
            metavar="NAME=V1,V2|START:STOP:STEP",
            help="sweep a parameter (repeatable): every combination is tested, ranked by --metric",
        )
        parser.add_argument("--metric", default="sharpe", help="sweep ranking metric (default: %(default)s)")
        parser.add_argument(
            "--search", choices=("grid", "optuna"), default="grid",
            help="optuna: a seeded TPE search; each --grid is then NAME=LOW:HIGH",
        )  # fmt: skip
        parser.add_argument("--trials", type=int, default=100, help="optuna trials (default: %(default)s)")
        parser.add_argument(
            "--holdout", type=float, default=HOLDOUT, help="share of the latest bars kept out of a sweep (%(default)s)"
        )
        parser.add_argument("--json", action="store_true", help="print JSON: stats, trades, equity_final")

    def handle(self, *args, **o):
        from backtesting.engine import FULL, BrokerConfig
        from backtesting.services import backtest_run
        from features.files import bars_from_table, table_read

        params = {}
        for item in o["param"]:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise CommandError(f"--param takes NAME=VALUE, got {item!r} (e.g. --param fast=10).")
            params[name.strip()] = value.strip()
        try:
            broker = BrokerConfig(
                cash=o["cash"], commission=o["commission"], commission_fixed=o["commission_fixed"],
                spread=o["spread"], slippage_bps=o["slippage_bps"], slippage_atr=o["slippage_atr"],
                fill=o["fill"], sizing=o["sizing"],
                fraction=o["fraction"] if o["fraction"] is not None else FULL, risk=o["risk"],
                stop_loss=o["stop_loss"], take_profit=o["take_profit"], leverage=o["leverage"],
                whole_units=not o["fractional"], allow_short=not o["no_short"], close_at_end=o["close_at_end"],
            )  # fmt: skip
            bars = bars_from_table(table_read(o["input"]))
            if o["grid"]:
                return self._sweep(bars, params, broker, o)
            bt = backtest_run(bars, strategy=o["strategy"], params=params, broker=broker)
        except ApplicationError as e:
            raise CommandError(f"{e.message} [{e.code}]") from e
        out = bt.as_json()
        if o["json"]:
            self.stdout.write(json.dumps(out))
            return
        s = out["stats"]
        self.stdout.write(f"{bt.strategy} {bt.params} on {s['bars']:,} bars ({s['start']} .. {s['end']})")
        for key in SUMMARY:
            value = s[key]
            self.stdout.write(f"  {key:<26} {'-' if value is None else f'{value:,.4g}'}")
        mc = s["monte_carlo"]
        if mc:
            r, d = mc["return_pct"], mc["max_drawdown_pct"]
            self.stdout.write(
                f"  bootstrap of trades ({mc['runs']} runs): return 5-95 % [{r['p5']:.1f}, {r['p95']:.1f}] %, "
                f"max drawdown [{d['p5']:.1f}, {d['p95']:.1f}] %"
            )

    def _sweep(self, bars, params, broker, o):
        from backtesting.services import bars_check
        from backtesting.sweep import sweep

        grid = {}
        for item in o["grid"]:
            name, sep, spec = item.partition("=")
            if not sep or not name:
                raise CommandError(f"--grid takes NAME=V1,V2 or NAME=START:STOP:STEP, got {item!r}.")
            if o["search"] == "optuna":
                low, _, high = spec.partition(":")
                try:
                    grid[name.strip()] = [_number(low), _number(high)]
                except ValueError:
                    raise CommandError(f"An Optuna --grid is NAME=LOW:HIGH, got {item!r}.") from None
            else:
                grid[name.strip()] = _values(spec)
        bars_check(bars)
        out = sweep(bars, strategy=o["strategy"], grid=grid, broker=broker, metric=o["metric"],
                    holdout=o["holdout"], base=params, search=o["search"], n_trials=o["trials"])  # fmt: skip
        if o["json"]:
            self.stdout.write(json.dumps(out))
            return
        m = out["metric"]
        self.stdout.write(f"{out['strategy']}: {out['tested']} of {out['combinations']} combinations, ranked by {m}")
        for row in out["ranking"][:10]:
            value = row[m]
            shown = "-" if value is None else f"{value:,.4g}"
            self.stdout.write(
                f"  {m} {shown:>10}  return {row['return_pct']:8.2f} %  trades {row['trades']:>5}  {row['params']}"
            )
        self.stdout.write(out["warning"])


def _values(spec: str) -> list[float]:
    try:
        if ":" in spec:
            start, stop, step = (float(x) for x in spec.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            values = list(np.arange(start, stop + step / 2, step))
        else:
            values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise CommandError(f"Cannot read the grid values {spec!r}: use 5,10,20 or 5:50:5.") from None
    return [int(v) if float(v).is_integer() else float(v) for v in values]


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() else value
