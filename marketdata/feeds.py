"""External market feed → ``market.data.update`` events of one tenant.

An adapter reads closed OHLCV bars from a URL and publishes them on the tenant's event stream,
where the live decision stream (``run_decision_stream``) stores and decides them. The adapter
never touches the database: it validates, de-duplicates and publishes.

Transports, chosen by the URL's scheme:
- ``ws://`` / ``wss://``: one WebSocket connection; every text (or UTF-8 binary) message is JSON.
  Messages already received when one is read are taken with it and published together.
- ``http://`` / ``https://``: polled every ``poll_interval`` seconds (default 1 s) with a cursor:
  ``after=<ts>`` (epoch seconds of the latest valid bar seen) is added to the URL's query, so the
  server need only return bars with ``ts > after``. The first poll has no cursor. A poll that
  brought new bars is followed at once by another (catching up a backlog page by page).
  Credentials in the URL's userinfo are sent as HTTP Basic auth (WebSocket: the same).

Message format: a JSON object (one bar), a JSON array of bar objects, or ``{"bars": [...]}``.
A bar::

    {"symbol": "BTC-USD", "timeframe": "1m", "ts": 1700000040,
     "open": 37000.5, "high": 37010.0, "low": 36990.0, "close": 37005.25, "volume": 12.5}

- ``symbol``: 1-32 letters, digits or ``. _ : / -`` (stored upper-case);
- ``timeframe``: one of ``marketdata.models.TIMEFRAME_SECONDS`` (1m 5m 15m 30m 1h 4h 1d);
- ``ts``: the bar's OPEN time, epoch seconds (an integer; values above 1e11 are read as
  milliseconds) or an ISO 8601 string (``2023-11-14T22:14:00Z``; no offset = UTC); it must be a
  multiple of the timeframe (a 1h bar opens on the hour, UTC);
- ``open``/``high``/``low``/``close`` (> 0) and ``volume`` (>= 0): finite numbers (numeric
  strings are accepted), with ``high >= max(open, close)`` and ``low <= min(open, close)``;
- optional ``closed``: ``false`` marks a bar still forming; it is ignored (only closed bars are
  events). Other keys are ignored.

What is dropped, never crashing the adapter, counted in ``stats.rejected`` by reason:
``invalid_json``, ``unexpected_message`` (JSON that holds no bar objects), ``not_an_object``,
``missing_field``, ``invalid_symbol``, ``unknown_timeframe``, ``invalid_timestamp``,
``misaligned_timestamp``, ``invalid_number``, ``not_finite``, ``non_positive_price``,
``high_below_open_close``, ``low_above_open_close``, ``negative_volume``, ``duplicate`` (the same
ts as the last bar published for that symbol and timeframe), ``out_of_order`` (older than it),
``backlog_overflow`` (Redis unreachable too long, see below). Bars of symbols outside the
``symbols`` filter, and unclosed bars, are counted in ``stats.ignored``. Bars received together
are sorted by time before the duplicate check, so a feed that lists newest first loses nothing.

Failures: a dropped connection, a refused one, an HTTP error or a timeout is retried with
exponential backoff (``backoff_base`` doubling up to ``backoff_cap`` seconds, times a random
0.5-1.0 so many adapters don't reconnect in step), reset by the next message. If publishing to
Redis fails, the bars are kept (up to ``max_pending``) and published before the next ones.
Everything the adapter reports (status, logs, errors) shows the URL with its userinfo and any
token-like query values replaced by ``***``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis

from api.errors import ApplicationError
from eventbus import bus

from .models import TIMEFRAME_SECONDS
from .validation import bar_problem

log = logging.getLogger(__name__)
# The websockets library logs the handshake (headers, Authorization included) at DEBUG: keep its
# lines for this adapter at WARNING whatever the root level.
_WS_LOG = logging.getLogger(f"{__name__}.websockets")
_WS_LOG.setLevel(logging.WARNING)

EVENT = "market.data.update"
SOURCE = "feed"
SCHEMES = ("ws", "wss", "http", "https")
DEFAULT_POLL_INTERVAL = 1.0
FIELDS = ("symbol", "timeframe", "ts", "open", "high", "low", "close", "volume")
SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,31}$")  # as marketdata.services.SYMBOL_RE
MAX_TS = 7_258_118_400  # 2200-01-01: anything later is not a bar time (and would overflow storage)
_SECRET_PARAM = re.compile(r"token|key|secret|pass|auth|sig|credential|session|jwt", re.I)


# --- redaction ------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL safe to print: userinfo and token-like query values become ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _secrets_of(url: str) -> list[str]:
    """The strings of ``url`` that must never be printed, longest first (raw and decoded forms)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = set()
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.update({userinfo, unquote(userinfo), *userinfo.split(":", 1), *unquote(userinfo).split(":", 1)})
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_PARAM.search(k) and v:
            found.update({v, quote(v, safe=""), quote(v)})
    # very short strings would blank out every matching letter of a message: not worth hiding
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


# --- validation -----------------------------------------------------------------------------------


class _Rejected(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Rejected("invalid_number")
    try:
        x = float(value)
    except (ValueError, OverflowError):
        raise _Rejected("invalid_number") from None
    if not math.isfinite(x):
        raise _Rejected("not_finite")
    return x


def parse_ts(value) -> int:
    """Epoch seconds of a bar time (see the module docstring); raises ``_Rejected``."""
    if isinstance(value, bool):
        raise _Rejected("invalid_timestamp")
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Rejected("invalid_timestamp") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        if dt.microsecond:
            raise _Rejected("misaligned_timestamp")
        seconds = (dt - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
    elif isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) >= MAX_TS * 1000:
            raise _Rejected("invalid_timestamp")
        seconds = value
        if abs(seconds) > 1e11:  # milliseconds, as marketdata.validation reads them
            seconds = seconds / 1000
    else:
        raise _Rejected("invalid_timestamp")
    if not 0 <= seconds < MAX_TS:
        raise _Rejected("invalid_timestamp")
    if seconds != int(seconds):
        raise _Rejected("misaligned_timestamp")
    return int(seconds)


def bar_check(item) -> dict:
    """A feed bar as a ``market.data.update`` payload (``source`` = feed), or ``_Rejected``."""
    if not isinstance(item, dict):
        raise _Rejected("not_an_object")
    if any(item.get(k) is None for k in FIELDS):
        raise _Rejected("missing_field")
    symbol = item["symbol"]
    if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol.strip()):
        raise _Rejected("invalid_symbol")
    timeframe = item["timeframe"]
    if not isinstance(timeframe, str) or timeframe not in TIMEFRAME_SECONDS:
        raise _Rejected("unknown_timeframe")
    ts = parse_ts(item["ts"])
    o, h, lo, c, v = (_number(item[k]) for k in ("open", "high", "low", "close", "volume"))
    problem = bar_problem(timeframe, ts, o, h, lo, c, v)
    if problem:
        raise _Rejected(problem)
    return {
        "symbol": symbol.strip().upper(),
        "timeframe": timeframe,
        "ts": ts,
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": v,
        "source": SOURCE,
    }


def _items(payload) -> list | None:
    """The bar objects of one decoded message, or None when it holds none."""
    if isinstance(payload, dict) and isinstance(payload.get("bars"), list):
        return payload["bars"]
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        return [payload]
    return None


# --- the adapter ----------------------------------------------------------------------------------


@dataclass
class FeedStats:
    messages: int = 0
    received: int = 0  # bar objects seen (valid or not)
    published: int = 0
    rejected: Counter = field(default_factory=Counter)
    ignored: Counter = field(default_factory=Counter)
    reconnects: int = 0
    connected: bool = False
    last_error: str | None = None
    last_error_at: float | None = None
    last_bar: dict = field(default_factory=dict)  # symbol -> {"timeframe", "ts", "close"}


class FeedAdapter:
    """Reads one feed URL and publishes its bars to ``schema``'s stream until ``stop()``.

    ``run()`` blocks (run it in a thread); ``status()`` may be called from any thread."""

    def __init__(
        self,
        url: str,
        *,
        schema: str,
        symbols: Iterable[str] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_pending: int = 100_000,
        max_message_bytes: int = 16 * 2**20,
        stop: threading.Event | None = None,
    ):
        url = (url or "").strip()
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in SCHEMES or not parts.hostname:
            raise ApplicationError(
                "invalid_feed_url",
                f"Feed URL '{redact_url(url)}' must be ws://, wss://, http:// or https:// with a host, "
                "e.g. wss://feed.example.com/bars; fix LEVEL3_DATA_STREAM_URL or --url.",
            )
        if poll_interval <= 0 or backoff_base <= 0 or backoff_cap < backoff_base:
            raise ApplicationError(
                "invalid_feed_settings", "poll_interval and backoff_base must be > 0, backoff_cap >= backoff_base."
            )
        bus.stream_key(EVENT, schema)  # no_tenant for "public": fail now, not on the first bar
        self.url = url
        self.schema = schema
        self.mode = "websocket" if parts.scheme in ("ws", "wss") else "http"
        self.symbols = {s.strip().upper() for s in symbols or () if s.strip()} or None
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_pending = max_pending
        self.max_message_bytes = max_message_bytes
        self.stats = FeedStats()
        self.redacted_url = redact_url(url)
        self._secrets = _secrets_of(url)
        self._stop = stop or threading.Event()
        self._lock = threading.Lock()
        self._last_ts: dict[tuple[str, str], int] = {}
        self._cursor: int | None = None
        self._pending: list[dict] = []
        self._failures = 0

    # -- control and status --

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> dict:
        with self._lock:
            s = self.stats
            return {
                "url": self.redacted_url,
                "mode": self.mode,
                "schema": self.schema,
                "symbols": sorted(self.symbols) if self.symbols else None,
                "connected": s.connected,
                "messages": s.messages,
                "received": s.received,
                "published": s.published,
                "pending": len(self._pending),
                "rejected": dict(s.rejected),
                "ignored": dict(s.ignored),
                "reconnects": s.reconnects,
                "last_error": s.last_error,
                "last_error_at": s.last_error_at,
                "last_bar": {k: dict(v) for k, v in s.last_bar.items()},
                "cursor": self._cursor,
            }

    def redact(self, text: str) -> str:
        text = text.replace(self.url, self.redacted_url)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- the loop --

    def run(self) -> FeedStats:
        log.info("feed %s (%s) -> %s: starting", self.redacted_url, self.mode, self.schema)
        attempt = 0
        while not self._stop.is_set():
            if attempt:
                with self._lock:
                    self.stats.reconnects += 1
            attempt += 1
            try:
                if self.mode == "websocket":
                    self._run_websocket()
                else:
                    self._run_http()
            except Exception as exc:  # network, protocol, anything: report, back off, retry
                self._failed(exc)
            finally:
                with self._lock:
                    self.stats.connected = False
            if not self._stop.is_set():
                self._stop.wait(self._backoff())
        if self._pending:
            self._publish([])  # last chance for bars kept while Redis was away
        log.info("feed %s: stopped (%d published)", self.redacted_url, self.stats.published)
        return self.stats

    def _backoff(self) -> float:
        self._failures += 1
        return backoff_delay(self._failures, base=self.backoff_base, cap=self.backoff_cap)

    def _failed(self, exc: BaseException) -> None:
        message = self.redact(_describe(exc))
        with self._lock:
            self.stats.last_error = message
            self.stats.last_error_at = time.time()
        log.warning("feed %s: %s; retrying", self.redacted_url, message)

    def _connected(self) -> None:
        with self._lock:
            first = not self.stats.connected
            self.stats.connected = True
        if first:
            log.info("feed %s: connected", self.redacted_url)

    # -- WebSocket --

    def _run_websocket(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        with connect(
            self.url,
            legacy=True,
            open_timeout=self.timeout,
            close_timeout=2,
            max_size=self.max_message_bytes,
            logger=_WS_LOG,
        ) as ws:
            self._connected()
            while not self._stop.is_set():
                try:
                    messages = [ws.recv(timeout=0.5)]
                except TimeoutError:
                    if self._pending:
                        self._publish([])
                    continue
                closed = None
                try:  # whatever else has arrived goes out in the same publish
                    while len(messages) < 1000:
                        messages.append(ws.recv(timeout=0))
                except TimeoutError:
                    pass
                except ConnectionClosed as exc:
                    closed = exc
                self.ingest(messages)
                self._failures = 0
                if closed is not None:
                    raise closed

    # -- HTTP polling --

    def _run_http(self) -> None:
        while not self._stop.is_set():
            body = self._poll()
            self._connected()
            self._failures = 0
            published = self.ingest([body]) if body.strip() else 0
            if not published:
                self._stop.wait(self.poll_interval)

    def _poll(self) -> bytes:
        parts = urlsplit(self.url)
        headers = {"Accept": "application/json", "User-Agent": "ati-feed/1"}
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, netloc = netloc.rsplit("@", 1)
            user, _, password = userinfo.partition(":")
            token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "after"]
        if self._cursor is not None:
            query.append(("after", str(self._cursor)))
        url = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body = response.read(self.max_message_bytes + 1)
        if len(body) > self.max_message_bytes:
            raise ValueError(f"a poll returned more than {self.max_message_bytes} bytes; page the response")
        return body

    # -- bars in, events out --

    def ingest(self, messages: list[str | bytes]) -> int:
        """Validate, de-duplicate and publish the bars of messages received together (one
        ``publish_many``). Returns how many bars were published."""
        valid: list[dict] = []
        with self._lock:
            s = self.stats
            for raw in messages:
                s.messages += 1
                try:
                    items = _items(json.loads(raw))
                except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                    s.rejected["invalid_json"] += 1
                    continue
                if items is None:
                    s.rejected["unexpected_message"] += 1
                    continue
                for item in items:
                    s.received += 1
                    if isinstance(item, dict) and item.get("closed") is False:
                        s.ignored["not_closed"] += 1
                        continue
                    if self.symbols is not None and isinstance(item, dict) and isinstance(item.get("symbol"), str):
                        if item["symbol"].strip().upper() not in self.symbols:
                            s.ignored["symbol_filter"] += 1
                            continue
                    try:
                        valid.append(bar_check(item))
                    except _Rejected as r:
                        s.rejected[r.reason] += 1
            fresh = []
            for bar in sorted(valid, key=lambda b: b["ts"]):
                key = (bar["symbol"], bar["timeframe"])
                last = self._last_ts.get(key)
                self._cursor = bar["ts"] if self._cursor is None else max(self._cursor, bar["ts"])
                if last is not None and bar["ts"] <= last:
                    s.rejected["duplicate" if bar["ts"] == last else "out_of_order"] += 1
                    continue
                self._last_ts[key] = bar["ts"]
                fresh.append(bar)
        return self._publish(fresh)

    def _publish(self, bars: list[dict]) -> int:
        batch = self._pending + bars
        if not batch:
            return 0
        try:
            bus.publish_many(EVENT, batch, schema=self.schema)
        except (redis.RedisError, OSError) as exc:
            keep = batch[-self.max_pending :]
            with self._lock:
                if len(batch) > len(keep):
                    self.stats.rejected["backlog_overflow"] += len(batch) - len(keep)
                self._pending = keep
            self._failed(RuntimeError(f"publishing to Redis failed ({exc}); {len(keep)} bar(s) kept to retry"))
            return 0
        with self._lock:
            self._pending = []
            self.stats.published += len(batch)
            for bar in batch:
                self.stats.last_bar[bar["symbol"]] = {
                    "timeframe": bar["timeframe"],
                    "ts": bar["ts"],
                    "close": bar["close"],
                }
        return len(batch)


def backoff_delay(failures: int, *, base: float, cap: float) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: ``base`` doubling up to ``cap``,
    times a random 0.5-1.0 so that adapters cut off together don't all come back at once."""
    return min(cap, base * 2 ** min(failures - 1, 60)) * random.uniform(0.5, 1.0)


def _describe(exc: BaseException) -> str:
    """One line a person can act on."""
    if isinstance(exc, urllib.error.HTTPError):
        hint = {
            401: "check the credentials in LEVEL3_DATA_STREAM_URL",
            403: "check the credentials in LEVEL3_DATA_STREAM_URL",
            404: "check the path of LEVEL3_DATA_STREAM_URL",
        }.get(exc.code, "the feed server failed")
        return f"HTTP {exc.code} {exc.reason} ({hint})"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot reach the feed: {exc.reason}"
    name = type(exc).__name__
    if name.startswith("ConnectionClosed"):
        return f"connection closed by the feed ({exc})"
    return f"{name}: {exc}" if str(exc) else name
