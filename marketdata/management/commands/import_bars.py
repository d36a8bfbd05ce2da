import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from marketdata import services
from marketdata.models import AssetClass, Timeframe
from marketdata.validation import read_table
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Import OHLCV bars of one symbol into a tenant, all rows or none. The file is CSV with the header "
        "timestamp,open,high,low,close,volume (ISO 8601 or epoch seconds, bar open times) or Parquet with "
        "those columns. Every problem is printed with its row and column and nothing is written. Example: "
        "python manage.py import_bars --tenant demo --symbol BTC-USD --timeframe 1d --input btc.csv"
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant slug, e.g. demo.")
        parser.add_argument("--symbol", required=True, help="Instrument symbol; created if unknown.")
        parser.add_argument("--timeframe", required=True, choices=Timeframe.values)
        parser.add_argument("--input", required=True, help="CSV or .parquet file.")
        parser.add_argument(
            "--on-conflict",
            default="error",
            choices=services.ON_CONFLICT,
            help="Bars already stored in the range: error (default), skip (keep them) or replace.",
        )
        parser.add_argument("--asset-class", choices=AssetClass.values, help="For a new instrument.")

    def handle(self, *args, **o):
        tenant = Tenant.objects.filter(slug=o["tenant"], status=Tenant.Status.ACTIVE).first()
        if tenant is None:
            raise CommandError(f"No active tenant '{o['tenant']}'.")
        path = Path(o["input"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        fmt = "parquet" if path.suffix.lower() == ".parquet" else "csv"
        started = time.perf_counter()

        def progress(pct, msg):
            bar = "#" * (pct // 5)
            sys.stderr.write(f"\r[{bar:<20}] {pct:3d}% {msg:<12}")
            sys.stderr.flush()

        try:
            raw = read_table(path.read_bytes(), fmt)
            with schema_context(tenant.schema_name):
                result = services.bars_import(
                    tenant=tenant,
                    symbol=o["symbol"],
                    timeframe=o["timeframe"],
                    raw=raw,
                    on_conflict=o["on_conflict"],
                    asset_class=o["asset_class"],
                    actor="cli:import_bars",
                    progress=progress,
                )
        except ApplicationError as exc:
            sys.stderr.write("\n")
            for e in exc.details.get("errors", [])[:50]:
                where = f"row {e['row']}" if e["row"] else "file"
                self.stderr.write(f"  {where:>10}  {e['column'] or '':<10} {e['code']:<26} {e['message']}")
            more = exc.details.get("error_count", 0) - 50
            if more > 0:
                self.stderr.write(f"  … and {more} more")
            raise CommandError(exc.message, returncode=2) from exc
        sys.stderr.write("\n")
        d = result.as_dict()
        self.stdout.write(
            f"{d['symbol']} {d['timeframe']}: {d['rows']} rows ({d['inserted']} inserted, {d['skipped']} skipped, "
            f"{d['replaced']} replaced) from {d['start']} to {d['end']}; {d['gap_count']} gap(s), "
            f"{d['missing_bars']} missing bar(s); {time.perf_counter() - started:.2f} s"
        )
