"""``manage.py backtest_analysis``: lookahead and recursive (start-up) bias checks of a strategy
on a file of bars, like freqtrade's lookahead-analysis and recursive-analysis."""

from __future__ import annotations

import json

from django.core.management.base import CommandError

from api.errors import ApplicationError
from ops.commands import OfflineCommand


class Command(OfflineCommand):
    help = (
        "Check a built-in strategy for lookahead bias (signals recomputed on data cut right after "
        "each checkpoint must not change) and for start-up dependence (signals recomputed with "
        "shorter histories). Exit status 1 when lookahead bias is found."
    )

    def add_arguments(self, parser):
        from backtesting.strategies import STRATEGIES

        parser.add_argument("--input", required=True, metavar="FILE", help="bars: .csv or .parquet")
        parser.add_argument("--strategy", required=True, choices=list(STRATEGIES))
        parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
        parser.add_argument("--checkpoints", type=int, default=40)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **o):
        from backtesting.analysis import lookahead_analysis, recursive_analysis
        from backtesting.services import bars_check
        from features.files import bars_from_table, table_read

        params = dict(item.partition("=")[::2] for item in o["param"])
        try:
            bars = bars_from_table(table_read(o["input"]))
            bars_check(bars)
            ahead = lookahead_analysis(bars, strategy=o["strategy"], params=params, checkpoints=o["checkpoints"])
            recursive = recursive_analysis(bars, strategy=o["strategy"], params=params)
        except ApplicationError as e:
            raise CommandError(f"{e.message} [{e.code}]") from e
        if o["json"]:
            self.stdout.write(json.dumps({"lookahead": ahead, "recursive": recursive}))
        else:
            self.stdout.write(f"{o['strategy']} {ahead['params']}")
            self.stdout.write(f"  lookahead: {ahead['verdict']}")
            for c in ahead["changes"][:5]:
                self.stdout.write(f"    bar {c['bar']} ({c['time']}): {c['full']} with all data, {c['cut']} cut")
            self.stdout.write(f"  recursive: {recursive['verdict']}")
            for r in recursive["startups"]:
                shown = "-" if r["differing_pct"] is None else f"{r['differing_pct']:.1f} %"
                self.stdout.write(f"    start-up {r['startup_bars']:>5} bars: signals differing {shown}")
        if ahead["biased"]:
            raise SystemExit(1)
