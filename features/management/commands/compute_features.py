"""``manage.py compute_features``: features for a file of bars, offline (no tenant, no database)."""

from __future__ import annotations

from django.core.management.base import CommandError

from api.errors import ApplicationError
from features.files import feature_spec_load, features_file_compute
from features.timeframes import TIMEFRAMES
from ops.commands import OfflineCommand

HELP = """Compute features for a file of OHLCV bars, offline: no tenant and no database needed.

Input (.csv, or .parquet by extension) needs the columns timestamp, open, high, low, close,
volume. timestamp is each bar's OPEN time: ISO 8601 (read as UTC unless it has an offset,
e.g. 2024-01-02T09:30:00Z) or epoch seconds; rows must be in increasing time order.

Output (.csv or .parquet by extension) keeps every input row in order and every input column
unchanged, and adds one column per feature. Warm-up cells, where a feature has no value yet,
are empty in CSV and null in Parquet.

Example:
  manage.py compute_features --input btc_1h.csv --output btc_1h_features.parquet \\
      --feature-set my_spec.json --timeframe 1h
"""


class Command(OfflineCommand):
    help = HELP

    def add_arguments(self, parser):
        parser.add_argument("--input", required=True, metavar="FILE", help="bars to read: .csv or .parquet")
        parser.add_argument("--output", required=True, metavar="FILE", help="file to write: .csv or .parquet")
        parser.add_argument(
            "--feature-set",
            default="default",
            metavar="default|SPEC.json",
            help="'default' (rsi_14, macd_12_26_9 line/signal/hist, bb_*_20_2, atr_14, adx_14) or a JSON "
            'feature spec file such as {"features": [{"indicator": "rsi", "params": {"length": 14}, '
            '"lags": [1]}]} (default: %(default)s)',
        )
        parser.add_argument(
            "--timeframe",
            choices=list(TIMEFRAMES),
            help="timeframe of the input bars; needed by features with their own higher timeframe "
            "(default: the spec's 'timeframe', else the most common spacing between rows)",
        )

    def handle(self, *args, **options):
        try:
            spec = feature_spec_load(options["feature_set"])
            result = features_file_compute(
                input_path=options["input"],
                output_path=options["output"],
                spec=spec,
                timeframe=options["timeframe"],
            )
        except ApplicationError as exc:
            raise CommandError(_describe(exc), returncode=2) from exc
        self.stdout.write(
            f"Wrote {result.rows} rows with {len(result.columns)} feature columns to {options['output']} "
            f"(timeframe {result.timeframe or 'irregular'}; first {result.warmup} rows are warm-up)."
        )


def _describe(exc: ApplicationError) -> str:
    errors = exc.details.get("errors") if isinstance(exc.details, dict) else None
    if not errors or len(errors) < 2:
        return exc.message
    lines = [exc.message.split(": ", 1)[0] + ":"]
    lines += [f"  {e['path'] or '(spec)'}: {e['message']}" for e in errors]
    return "\n".join(lines)
