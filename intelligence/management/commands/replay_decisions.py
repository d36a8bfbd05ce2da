"""Replay a recorded live period and check every decision against the record."""

import json
import sys

import pandas as pd
from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from tenants.models import Tenant


def _when(text: str | None):
    if not text:
        return None
    try:
        ts = pd.Timestamp(text)
    except ValueError as exc:
        raise CommandError(f"'{text}' is not a date or time (ISO 8601, e.g. 2024-05-01T12:00Z).") from exc
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


class Command(BaseCommand):
    help = (
        "Derive the live stream's decisions of a period again, from the engine checkpoint before it and each "
        "decision's recorded inputs, with the same agents and consensus code, and compare them field by field "
        "with what was stored. Exit status 1 when any differs. Example: python manage.py replay_decisions "
        "--tenant demo --symbol BTC-USD --start 2024-05-01 --end 2024-05-02"
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--symbol")
        parser.add_argument("--timeframe")
        parser.add_argument("--start", help="first bar (ISO 8601, UTC unless it says otherwise)")
        parser.add_argument("--end", help="bars before this time")
        parser.add_argument("--json", action="store_true", help="print the whole report as JSON")

    def handle(self, *args, **o):
        from intelligence.rerun import decisions_replay

        tenant = Tenant.objects.filter(slug=o["tenant"], status=Tenant.Status.ACTIVE).first()
        if tenant is None:
            raise CommandError(f"No active tenant '{o['tenant']}'.")

        def show(percent, message):
            if not o["json"]:
                bar = "#" * (percent // 5)
                sys.stderr.write(f"\r[{bar:<20}] {percent:3d}% {message}   ")

        with schema_context(tenant.schema_name):
            try:
                out = decisions_replay(
                    symbol=o["symbol"], timeframe=o["timeframe"], start=_when(o["start"]), end=_when(o["end"]),
                    progress=show,
                )  # fmt: skip
            except ApplicationError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from exc
        report = out["report"]
        if o["json"]:
            self.stdout.write(json.dumps(report, indent=2, default=str))
        else:
            sys.stderr.write("\n")
            cp = report["checkpoint"]
            self.stdout.write(
                f"from checkpoint #{cp['id']} ({cp['reason']}, {cp['flow']}, after decision #{cp['after_id']}): "
                f"{report['replayed']} decisions replayed, {report['matched']} of {report['compared']} in the "
                f"period identical to the record"
            )
            for ref, m in (report["model"] or {}).items():
                self.stdout.write(f"model {ref}: {m.get('checked', 0)} rows predicted again, largest difference "
                                  f"{m.get('max_abs_difference', '-')}")  # fmt: skip
            if report["first_mismatch"]:
                first = report["first_mismatch"]
                self.stdout.write(f"first difference: decision #{first['id']} {first['symbol']} {first['ts']}:")
                for field, pair in first["fields"].items():
                    self.stdout.write(f"  {field}: recorded {pair['recorded']!r}, replayed {pair['replayed']!r}")
        if not report["exact"]:
            sys.exit(1)
