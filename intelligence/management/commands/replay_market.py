"""Replay stored bars of a tenant's instrument as live market events."""

import sys

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from intelligence import replay
from marketdata import selectors as md
from marketdata.models import Timeframe
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Publish stored bars as market.data.update events at --speed bars per second. --mode live (default) "
        "continues the series after its last bar, re-stamped, forever (or --limit bars); --mode history replays "
        "the stored bars from --start. Example: python manage.py replay_market --tenant demo --symbol BTC-USD "
        "--speed 50. With --all: every active tenant's enabled live replays (marketdata.LiveReplay: the "
        "onboarding's sample data turns one on), each at its own speed, re-read every few seconds, until stopped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Every tenant's enabled live replays.")
        parser.add_argument("--tenant", help="Tenant slug (with --all: only this tenant's replays).")
        parser.add_argument("--symbol")
        parser.add_argument("--timeframe", choices=Timeframe.values, help="Default: the symbol's only timeframe.")
        parser.add_argument("--speed", type=float, default=50.0, help="Bars per second.")
        parser.add_argument("--mode", choices=["live", "history"], default="live")
        parser.add_argument("--start", help="history mode: first bar (ISO 8601).")
        parser.add_argument("--limit", type=int, help="Stop after this many bars.")

    def handle(self, *args, **o):
        if o["all"]:
            return self._all(o)
        if not (o["tenant"] and o["symbol"]):
            raise CommandError("--tenant and --symbol are required (or --all).")
        tenant = Tenant.objects.filter(slug=o["tenant"], status=Tenant.Status.ACTIVE).first()
        if tenant is None:
            raise CommandError(f"No active tenant '{o['tenant']}'.")
        with schema_context(tenant.schema_name):
            try:
                instrument = md.instrument_get(symbol=o["symbol"])
                timeframe = o["timeframe"] or md.only_timeframe(instrument=instrument, hint="pass --timeframe")
                if o["mode"] == "history":
                    bars = md.bars_frame(instrument=instrument, timeframe=timeframe, start=o["start"])
                    events = replay.history_events(bars, instrument.symbol, timeframe)
                else:
                    bars = md.bars_frame(instrument=instrument, timeframe=timeframe, limit=5000)
                    if bars.empty:
                        raise ApplicationError("no_bars", f"{instrument.symbol} has no {timeframe} bars.")
                    last_ts = int(bars.index[-1].timestamp())
                    events = replay.live_events(
                        bars, instrument.symbol, timeframe, after_ts=last_ts, last_close=float(bars["close"].iloc[-1])
                    )

                def show(n):
                    sys.stderr.write(f"\r{instrument.symbol} {timeframe}: {n:,} bars published")

                n = replay.replay(
                    events, schema=tenant.schema_name, speed=o["speed"], limit=o["limit"], on_publish=show
                )
            except ApplicationError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from exc
            except KeyboardInterrupt:
                sys.stderr.write("\n")
                return
        sys.stderr.write("\n")
        self.stdout.write(f"published {n} bar(s)")

    def _all(self, o):
        import signal
        import threading

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        hub = replay.ReplayHub(tenant=o["tenant"], log=lambda m: self.stdout.write(f"replay: {m}"))
        last = [0.0]

        def show(n):
            import time

            if time.monotonic() - last[0] >= 10:
                last[0] = time.monotonic()
                self.stdout.write(f"replay: {n:,} bars published ({len(hub.sources)} series live)")

        self.stdout.write("replay: publishing every tenant's enabled live replays (Ctrl-C stops)")
        try:
            hub.run(stop=stop.is_set, on_publish=show)
        except KeyboardInterrupt:
            pass
        self.stdout.write(f"published {hub.published} bar(s)")
