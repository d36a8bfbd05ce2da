"""Ingest bars from an external market feed into a tenant's event stream, until stopped."""

from __future__ import annotations

import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from api.errors import ApplicationError
from marketdata.feeds import DEFAULT_POLL_INTERVAL, FeedAdapter
from tenants.models import Tenant

NO_URL = "LEVEL3_DATA_STREAM_URL not set; no external feed"


class Command(BaseCommand):
    help = (
        "Read closed OHLCV bars from an external feed (ws://, wss://: WebSocket messages; http://, https://: "
        "polled with ?after=<last ts>) and publish them as market.data.update events of one tenant; "
        "run_decision_stream stores and decides them. Bad bars are dropped and counted by reason, duplicates "
        "skipped, disconnects retried with backoff. The message format is in marketdata/feeds.py and the README. "
        "Ctrl-C (or SIGTERM) stops cleanly. Example: python manage.py ingest_feed --tenant demo "
        "--url wss://feed.example.com/bars --symbols BTC-USD,ETH-USD"
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant slug (e.g. demo) or schema name.")
        parser.add_argument(
            "--url", help="Feed URL; credentials may be in it (never printed). Default: $LEVEL3_DATA_STREAM_URL."
        )
        parser.add_argument("--symbols", help="Comma-separated symbols to keep, e.g. BTC-USD,ETH-USD (default: all).")
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=DEFAULT_POLL_INTERVAL,
            help=f"HTTP feeds: seconds between polls (default {DEFAULT_POLL_INTERVAL:g}).",
        )
        parser.add_argument(
            "--optional",
            action="store_true",
            help="Without a URL, print that there is no feed and wait until stopped (exit 0) instead of failing. "
            "For the Procfile: honcho stops every process as soon as one exits.",
        )
        parser.add_argument(
            "--progress-every",
            type=float,
            default=10.0,
            help="Seconds between progress lines when stdout is not a terminal (default 10; a terminal gets "
            "one updating line).",
        )

    def handle(self, *args, **o):
        url = (o["url"] or settings.LEVEL3_DATA_STREAM_URL or "").strip()
        stop = threading.Event()
        signals = _StopSignals()
        try:
            if not url:
                if not o["optional"]:
                    raise CommandError(
                        "No feed URL: set LEVEL3_DATA_STREAM_URL (e.g. wss://feed.example.com/bars or "
                        "https://user:pass@feed.example.com/bars) or pass --url."
                    )
                self.stdout.write(NO_URL)
                self.stdout.flush()
                signals.wait()
                return
            tenant = (
                Tenant.objects.filter(Q(slug=o["tenant"]) | Q(schema_name=o["tenant"]), status=Tenant.Status.ACTIVE)
                .exclude(schema_name="public")
                .first()
            )
            if tenant is None:
                raise CommandError(f"No active tenant '{o['tenant']}' (give its slug or schema name).")
            symbols = [s for s in (o["symbols"] or "").split(",") if s.strip()] or None
            try:
                adapter = FeedAdapter(
                    url, schema=tenant.schema_name, symbols=symbols, poll_interval=o["poll_interval"], stop=stop
                )
            except ApplicationError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from exc
            self.stdout.write(f"feed {adapter.redacted_url} ({adapter.mode}) -> tenant {tenant.slug}")
            self.stdout.flush()
            self._run(adapter, o["progress_every"], signals)
        finally:
            signals.restore()

    def _run(self, adapter: FeedAdapter, every: float, signals: _StopSignals) -> None:
        thread = threading.Thread(target=adapter.run, name="ingest-feed", daemon=True)
        thread.start()
        tty = self.stdout.isatty()
        every = 1.0 if tty else max(every, 0.05)
        progress = _Progress(adapter)
        due = time.monotonic() + every
        try:
            while thread.is_alive() and not signals.wait(min(every, 0.2)):
                if time.monotonic() < due:
                    continue
                due += every
                line = progress.line()
                if tty:
                    self.stdout.write(f"\r{line}\x1b[K", ending="")
                elif progress.changed:
                    self.stdout.write(line)
                self.stdout.flush()
        except KeyboardInterrupt:  # Ctrl-C where no handler could be installed (not the main thread)
            pass
        finally:
            adapter.stop()
            thread.join(timeout=15)
        if tty:
            self.stdout.write("")
        s = adapter.status()
        rejected = sum(s["rejected"].values())
        self.stdout.write(
            f"stopped: {s['received']:,} bar(s) received, {s['published']:,} published, {rejected:,} rejected"
            + (f" ({_reasons(s['rejected'])})" if rejected else "")
        )


class _Progress:
    """A tqdm-like line: totals, the publish rate since the last line, the state."""

    def __init__(self, adapter: FeedAdapter):
        self.adapter = adapter
        self.started = self.at = time.monotonic()
        self.published = 0
        self.last: tuple | None = None
        self.changed = False

    def line(self) -> str:
        s = self.adapter.status()
        now = time.monotonic()
        rate = (s["published"] - self.published) / max(now - self.at, 1e-9)
        self.published, self.at = s["published"], now
        rejected = sum(s["rejected"].values())
        state = (s["published"], s["received"], rejected, s["connected"], s["last_error"])
        self.changed, self.last = state != self.last, state
        text = (
            f"{'connected' if s['connected'] else 'disconnected'} | {s['received']:,} received, "
            f"{s['published']:,} published ({rate:,.1f} bars/s), {rejected:,} rejected"
        )
        if rejected:
            text += f" ({_reasons(s['rejected'])})"
        if s["reconnects"]:
            text += f", {s['reconnects']} reconnect(s)"
        if not s["connected"] and s["last_error"]:
            text += f" | last error: {s['last_error']}"
        return f"[{_elapsed(now - self.started)}] {text}"


def _reasons(counts: dict) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def _elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


class _StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM (honcho, systemd, docker stop) only set a flag, which the main
    loop polls. Nothing is raised into the middle of a lock, a thread join or an ``Event.set``
    (a KeyboardInterrupt there can leave a lock held and hang the exit). Outside the main thread
    (a test calling the command) no handler can be installed: Ctrl-C raises as usual."""

    def __init__(self):
        self.stopped = False
        self.previous: dict[int, object] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                break

    def _handle(self, signum, frame) -> None:
        self.stopped = True

    def wait(self, seconds: float | None = None) -> bool:
        """Sleep until stopped (or ``seconds`` passed); True once stopped."""
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while not self.stopped:
                left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if left <= 0:
                    break
                time.sleep(left)
        except KeyboardInterrupt:
            self.stopped = True
        return self.stopped

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
