"""The external feed adapter, against real feed servers on 127.0.0.1 (a WebSocket server and an
HTTP server in threads): bars become market.data.update events of the tenant, bad bars are dropped
with a reason while their neighbours go through, nothing is published twice, a dropped connection
loses nothing sent after it, HTTP polls carry the cursor, credentials never show, and the command
fails clearly without a URL, idles with --optional, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_context
from websockets.sync.server import serve

from eventbus import bus
from intelligence import replay
from marketdata.feeds import FeedAdapter, backoff_delay, redact_url
from tests.conftest import service_env

# the tenants' schemas must exist (and a test may read its own tenant's rows); the adapter itself
# only talks to Redis
pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_040  # a minute boundary (2023-11-14T22:14:00Z)
H0 = T0 - T0 % 3600  # an hour boundary


def bar(ts, symbol="FEED-A", timeframe="1m", close=100.0, **over):
    b = {
        "symbol": symbol,
        "timeframe": timeframe,
        "ts": ts,
        "open": close - 0.5,
        "high": close + 1.0,
        "low": close - 1.0,
        "close": close,
        "volume": 10.0,
    }
    b.update(over)
    return b


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_until(predicate, what: str, timeout: float = 20.0):
    """Poll ``predicate`` until true (returns its value) or fail after ``timeout`` s: a deadline, not a pace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def schema(tenants_ab):
    """alpha's schema with an empty market stream (before and after)."""
    schema = tenants_ab[0].tenant.schema_name
    key = bus.stream_key("market.data.update", schema)
    bus.client().delete(key)
    yield schema
    bus.client().delete(key)


def stream_events(schema: str) -> list[dict]:
    rows = bus.client().xrange(bus.stream_key("market.data.update", schema))
    return [json.loads(fields[b"e"])["data"] for _, fields in rows]


class Running:
    """An adapter running in a thread; ``close()`` stops it and checks it ended."""

    def __init__(self, adapter: FeedAdapter):
        self.adapter = adapter
        self.thread = threading.Thread(target=adapter.run, daemon=True)
        self.thread.start()

    def close(self):
        self.adapter.stop()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the adapter did not stop"


@pytest.fixture
def running():
    started: list[Running] = []

    def start(url, schema, **kw):
        kw.setdefault("backoff_base", 0.02)
        kw.setdefault("backoff_cap", 0.2)
        r = Running(FeedAdapter(url, schema=schema, **kw))
        started.append(r)
        return r.adapter

    yield start
    for r in started:
        r.close()


# --- feed servers -----------------------------------------------------------------------------------


class WSFeed:
    """A WebSocket feed on 127.0.0.1. Connection i sends ``scripts[i]`` (messages: str, or objects
    sent as JSON); every connection but the last then ends — ``close`` (a close frame) or ``abort``
    (the TCP connection cut, no close frame) — and the last stays open until the server stops.
    ``send(msg)`` pushes to the open connection."""

    def __init__(self, scripts: list[list], ends: list[str] | None = None):
        self.scripts = scripts
        self.ends = ends or ["close"] * (len(scripts) - 1)
        self.connections = 0
        self.auth: list[str | None] = []  # the Authorization header of each handshake
        self.paths: list[str] = []
        self.live = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.server = serve(self._handler, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/bars", userinfo="") -> str:
        return f"ws://{userinfo}127.0.0.1:{self.port}{path}"

    def _handler(self, ws):
        with self._lock:
            i = self.connections
            self.connections += 1
            self.auth.append(ws.request.headers.get("Authorization"))
            self.paths.append(ws.request.path)
        for message in self.scripts[i] if i < len(self.scripts) else []:
            ws.send(message if isinstance(message, str) else json.dumps(message))
        if i < len(self.scripts) - 1:
            if self.ends[i] == "abort":
                ws.socket.shutdown(socket.SHUT_RDWR)
            else:
                ws.close()
            return
        self.live = ws
        self._done.wait()

    def send(self, message):
        self.live.send(message if isinstance(message, str) else json.dumps(message))

    def stop(self):
        self._done.set()
        self.server.shutdown()
        self.thread.join(timeout=10)


class HTTPFeed:
    """An HTTP feed on 127.0.0.1 serving ``{"bars": [...]}`` with ``ts > after`` when the query
    has ``after``; records every request. The first ``fail`` requests get a 500; with ``token`` /
    ``basic`` set, requests without them get a 401."""

    def __init__(self, bars=(), *, fail=0, token=None, basic=None):
        self.bars: list[tuple[int, dict]] = []  # (epoch ts, bar as served)
        self.requests: list[dict] = []
        self.served = 0
        self.fail = fail
        self.lock = threading.Lock()
        feed = self
        self.add(*bars)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with feed.lock:
                    feed.requests.append({"path": parts.path, "query": query, "auth": self.headers["Authorization"]})
                    failing = feed.fail > 0
                    feed.fail -= failing
                if failing:
                    return self._reply(500, {"error": "down"})
                if token and query.get("token") != token:
                    return self._reply(401, {"error": "token"})
                if basic and self.headers["Authorization"] != "Basic " + base64.b64encode(basic.encode()).decode():
                    return self._reply(401, {"error": "basic"})
                after = int(query["after"]) if "after" in query else None
                with feed.lock:
                    out = [b for ts, b in feed.bars if after is None or ts > after]
                    feed.served += len(out)
                self._reply(200, {"bars": out})

            def _reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, *bars: dict):
        """Serve these bars from now on (all at once); a bar's epoch is its ``ts`` or ``_epoch``."""
        with self.lock:
            self.bars += [(b.pop("_epoch", b["ts"]), b) for b in bars]

    def url(self, path="/bars", query="", userinfo="") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def ws_feed():
    servers: list[WSFeed] = []

    def make(scripts, ends=None):
        servers.append(WSFeed(scripts, ends))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def http_feed():
    servers: list[HTTPFeed] = []

    def make(*args, **kw):
        servers.append(HTTPFeed(*args, **kw))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


# --- WebSocket --------------------------------------------------------------------------------------


def test_websocket_bars_become_the_tenants_events_epoch_and_iso_alike(schema, ws_feed, running):
    # given a feed sending one bar with an epoch ts, then an array whose stamps are ISO 8601
    # (Z, an explicit offset, naive = UTC, and milliseconds)
    feed = ws_feed([[bar(T0, close=100.0)]])
    with mock.patch.object(bus, "publish_many", wraps=bus.publish_many) as spy:
        adapter = running(feed.url(path="/bars?feed=ohlcv", userinfo="ws-user:ws-pa55@"), schema)
        wait_until(lambda: adapter.status()["published"] == 1, "the first bar")
        feed.send(
            [
                bar(iso(T0 + 60), close=101.0),
                bar("2023-11-14T23:16:00+01:00", close=102.0),
                bar("2023-11-14T22:17:00", close=103.0),
                bar((T0 + 240) * 1000, close=104.0),
            ]
        )
        wait_until(lambda: adapter.status()["published"] == 5, "5 bars published")
    events = stream_events(schema)
    # then every bar is an event of this tenant, shaped like a replayed bar but from the feed
    assert [e["ts"] for e in events] == [T0, T0 + 60, T0 + 120, T0 + 180, T0 + 240]
    assert [e["close"] for e in events] == [100.0, 101.0, 102.0, 103.0, 104.0]
    like_replay = replay.bar_event("FEED-A", "1m", T0, 99.5, 101.0, 99.0, 100.0, 10.0)
    assert events[0] == {**like_replay, "source": "feed"}
    # the array's four bars went out in one publish_many call
    assert [len(c.args[1]) for c in spy.call_args_list] == [1, 4]
    # the URL's path and query were kept, its userinfo sent as Basic auth
    assert feed.paths == ["/bars?feed=ohlcv"]
    assert feed.auth[0] == "Basic " + base64.b64encode(b"ws-user:ws-pa55").decode()
    status = adapter.status()
    assert status["connected"] and status["rejected"] == {} and status["received"] == 5
    assert status["last_bar"] == {"FEED-A": {"timeframe": "1m", "ts": T0 + 240, "close": 104.0}}


def test_bad_bars_are_dropped_with_their_reason_and_the_rest_of_the_message_goes_through(schema, ws_feed, running):
    good = [bar(T0, close=50.0), bar(T0 + 60, symbol="feed-b", close=51.0), bar(T0 + 120, close=52.0)]
    bad = [
        ("not_an_object", "just a string"),
        ("missing_field", {k: v for k, v in bar(T0 + 180).items() if k != "volume"}),
        ("invalid_symbol", bar(T0 + 180, symbol="BAD SYMBOL!")),
        ("unknown_timeframe", bar(T0 + 180, timeframe="7m")),
        ("invalid_timestamp", bar("yesterday-ish")),
        ("misaligned_timestamp", bar(T0 + 181)),
        ("misaligned_timestamp", bar(T0 + 3600, timeframe="1d")),
        ("invalid_number", bar(T0 + 180, open="abc")),
        ("invalid_number", bar(T0 + 180, volume=True)),
        ("not_finite", bar(T0 + 180, high=float("inf"))),
        ("non_positive_price", bar(T0 + 180, close=0.0, open=0.0, low=0.0, high=1.0)),
        ("high_below_open_close", bar(T0 + 180, high=99.0)),
        ("low_above_open_close", bar(T0 + 180, low=100.0)),
        ("negative_volume", bar(T0 + 180, volume=-1)),
    ]
    message = [good[0], *[b for _, b in bad[:7]], good[1], *[b for _, b in bad[7:]]]
    feed = ws_feed(
        [
            [
                "{not json",
                "42",
                json.dumps(message, allow_nan=True),
                {"bars": [good[2], bar(T0 + 180, closed=False)]},
            ]
        ]
    )
    adapter = running(feed.url(), schema)
    wait_until(lambda: adapter.status()["messages"] == 4, "4 messages read")
    wait_until(lambda: adapter.status()["published"] == 3, "the good bars published")
    status = adapter.status()
    expected = {"invalid_json": 1, "unexpected_message": 1}
    for reason, _ in bad:
        expected[reason] = expected.get(reason, 0) + 1
    assert status["rejected"] == expected
    assert status["ignored"] == {"not_closed": 1}
    assert status["published"] == 3 and status["received"] == 3 + len(bad) + 1
    assert [(e["symbol"], e["ts"], e["close"]) for e in stream_events(schema)] == [
        ("FEED-A", T0, 50.0),
        ("FEED-B", T0 + 60, 51.0),  # symbols are stored upper-case
        ("FEED-A", T0 + 120, 52.0),
    ]


def test_duplicates_and_older_bars_are_not_republished_and_the_symbol_filter_applies(schema, ws_feed, running):
    feed = ws_feed([[]])
    adapter = running(feed.url(), schema, symbols=["feed-a"])
    wait_until(lambda: feed.live is not None, "the connection")
    messages = [
        [bar(T0 + 60), bar(T0)],  # newest first: bars received together are ordered before the check
        [bar(T0 + 60), bar(T0 + 120)],  # a repeat and one new
        bar(T0),  # older than the last published
        [bar(H0, timeframe="5m"), bar(T0, symbol="OTHER")],  # another series; a filtered-out symbol
    ]
    for n, message in enumerate(messages, 1):
        feed.send(message)
        wait_until(lambda n=n: adapter.status()["messages"] == n, f"message {n} handled")
    status = adapter.status()
    assert status["rejected"] == {"duplicate": 1, "out_of_order": 1}
    assert status["ignored"] == {"symbol_filter": 1}
    assert [(e["timeframe"], e["ts"]) for e in stream_events(schema)] == [
        ("1m", T0),
        ("1m", T0 + 60),
        ("1m", T0 + 120),
        ("5m", H0),
    ]


def test_after_the_server_drops_the_connection_the_adapter_reconnects_and_loses_nothing(schema, ws_feed, running):
    # given a server that ends the first connection cleanly and cuts the second without a close
    # frame; each new connection first re-sends the last bar the client already has
    first = [bar(T0 + 60 * i, close=100 + i) for i in range(5)]
    second = [first[-1]] + [bar(T0 + 60 * i, close=100 + i) for i in range(5, 9)]
    third = [second[-1]] + [bar(T0 + 60 * i, close=100 + i) for i in range(9, 12)]
    feed = ws_feed([[*first], [*second], [*third]], ends=["close", "abort"])
    adapter = running(feed.url(), schema)
    wait_until(lambda: adapter.status()["published"] == 12, "12 bars published")
    wait_until(lambda: feed.live is not None, "the third connection")
    # and bars sent on the reconnected socket keep arriving
    feed.send([bar(T0 + 60 * 12, close=112)])
    wait_until(lambda: adapter.status()["published"] == 13, "the bar sent after reconnecting")
    status = adapter.status()
    assert feed.connections == 3 and status["reconnects"] == 2 and status["connected"]
    assert status["rejected"] == {"duplicate": 2}
    assert status["last_error"].startswith("connection closed by the feed")
    events = stream_events(schema)
    assert [e["ts"] for e in events] == [T0 + 60 * i for i in range(13)]
    assert [e["close"] for e in events] == [100 + i for i in range(13)]


def test_an_unreachable_websocket_feed_is_retried_and_its_credentials_never_show(schema, running, caplog):
    # given a feed URL with credentials in the userinfo and the query, and nothing listening there
    url = f"wss://feed-user-7:pw-S3CRET-99@127.0.0.1:{free_port()}/v1/stream?api_key=KEY-abc-123&region=eu"
    with caplog.at_level(logging.INFO, logger="marketdata.feeds"):
        adapter = running(url, schema)
        wait_until(lambda: adapter.status()["reconnects"] >= 3, "3 retries")
    status = adapter.status()
    assert not status["connected"] and status["published"] == 0
    assert status["url"] == f"wss://***@127.0.0.1:{urlsplit(url).port}/v1/stream?api_key=***&region=eu"
    assert status["last_error"]  # says why
    shown = json.dumps(status) + caplog.text
    assert "retrying" in caplog.text
    for secret in ("feed-user-7", "pw-S3CRET-99", "KEY-abc-123"):
        assert secret not in shown


def test_backoff_doubles_up_to_its_cap_with_jitter():
    for failures, full in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (50, 30.0), (10_000, 30.0)]:
        delays = [backoff_delay(failures, base=0.5, cap=30.0) for _ in range(200)]
        assert all(full * 0.5 <= d <= full for d in delays), failures
        assert len(set(delays)) > 100  # jittered, not one value


def test_redact_url_hides_userinfo_and_token_like_values_only():
    assert (
        redact_url("https://u%40x:p%2Fw@feed.example.com:8443/bars?token=t1&access_token=t2&symbols=A,B&signature=s")
        == "https://***@feed.example.com:8443/bars?token=***&access_token=***&symbols=A%2CB&signature=***"
    )
    assert redact_url("ws://feed.example.com/bars") == "ws://feed.example.com/bars"
    # error texts that quote the URL or a piece of it are cleaned too
    url = "wss://key-AAA111:sec-BBB222@feed.example.com/x?token=tok%2FCCC333"
    adapter = FeedAdapter(url, schema="t_any")
    text = adapter.redact(f"{url} isn't a valid URI; auth sec-BBB222 rejected; token tok/CCC333")
    assert text == ("wss://***@feed.example.com/x?token=*** isn't a valid URI; auth *** rejected; token ***")


# --- HTTP polling ------------------------------------------------------------------------------------


def test_http_polls_carry_the_cursor_so_each_asks_only_for_new_bars(schema, http_feed, running):
    # given a feed with three bars (ISO stamps) behind a token and Basic auth
    feed = http_feed(token="tok-XYZ-987", basic="reader:pa55-word")
    feed.add(*[bar(iso(T0 + 60 * i), close=10 + i, _epoch=T0 + 60 * i) for i in range(3)])
    url = feed.url(query="token=tok-XYZ-987&fmt=json", userinfo="reader:pa55-word@")
    adapter = running(url, schema, poll_interval=0.02)
    wait_until(lambda: adapter.status()["published"] == 3, "the first 3 bars")
    # when two more bars appear on the server
    polls_before = len(feed.requests)
    feed.add(bar(T0 + 180, close=13), bar(iso(T0 + 240), close=14, _epoch=T0 + 240))
    wait_until(lambda: adapter.status()["published"] == 5, "the 2 new bars")
    wait_until(lambda: len(feed.requests) > polls_before + 2, "a few more polls")
    # then the first poll had no cursor, every later one had the latest ts, and credentials went along
    assert "after" not in feed.requests[0]["query"]
    afters = [r["query"].get("after") for r in feed.requests[1:]]
    assert set(afters) <= {str(T0 + 120), str(T0 + 240)} and str(T0 + 240) in afters
    assert afters.index(str(T0 + 240)) > afters.index(str(T0 + 120)) and None not in afters
    assert all(r["query"]["token"] == "tok-XYZ-987" and r["query"]["fmt"] == "json" for r in feed.requests)
    assert all(r["auth"] == "Basic " + base64.b64encode(b"reader:pa55-word").decode() for r in feed.requests)
    # so the server sent each bar once, and nothing was published twice
    assert feed.served == 5
    assert [e["ts"] for e in stream_events(schema)] == [T0 + 60 * i for i in range(5)]
    status = adapter.status()
    assert status["rejected"] == {} and status["cursor"] == T0 + 240
    assert "tok-XYZ-987" not in json.dumps(status) and "pa55-word" not in json.dumps(status)


def test_http_errors_are_retried_with_backoff_and_logged_without_credentials(schema, http_feed, running, caplog):
    feed = http_feed([bar(T0), bar(T0 + 60)], fail=3)
    url = feed.url(query="access_token=SECRET-tkn-42", userinfo="svc:hunter2-pass@")
    with caplog.at_level(logging.INFO, logger="marketdata.feeds"):
        adapter = running(url, schema, poll_interval=0.02)
        wait_until(lambda: adapter.status()["published"] == 2, "the bars after 3 failed polls")
    status = adapter.status()
    assert status["reconnects"] == 3 and status["connected"]
    assert status["last_error"].startswith("HTTP 500")
    assert caplog.text.count("HTTP 500") == 3
    for secret in ("SECRET-tkn-42", "hunter2-pass"):
        assert secret not in caplog.text and secret not in json.dumps(status)


def test_an_http_401_says_to_check_the_credentials(schema, http_feed, running):
    feed = http_feed([bar(T0)], token="right")
    adapter = running(feed.url(query="token=wrong-one"), schema, poll_interval=0.02)
    error = wait_until(lambda: adapter.status()["last_error"], "an error")
    assert "401" in error and "check the credentials in LEVEL3_DATA_STREAM_URL" in error
    assert "wrong-one" not in error and adapter.status()["published"] == 0


def test_bars_are_kept_while_redis_is_unreachable_and_published_after(schema, ws_feed, running):
    import redis

    real = bus.publish_many
    calls = {"n": 0}

    def flaky(event, items, *, schema=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise redis.ConnectionError("Redis went away")
        return real(event, items, schema=schema)

    feed = ws_feed([[[bar(T0), bar(T0 + 60)]]])
    with mock.patch.object(bus, "publish_many", side_effect=flaky):
        adapter = running(feed.url(), schema)
        wait_until(lambda: adapter.status()["published"] == 2, "the kept bars published")
        feed.send(bar(T0 + 120))
        wait_until(lambda: adapter.status()["published"] == 3, "the next bar")
    assert [e["ts"] for e in stream_events(schema)] == [T0, T0 + 60, T0 + 120]
    assert "publishing to Redis failed" in adapter.status()["last_error"]


def test_a_bad_url_is_refused_before_anything_runs(schema):
    from api.errors import ApplicationError

    with pytest.raises(ApplicationError) as exc:
        FeedAdapter("ftp://user:pw12345@example.com/bars", schema=schema)
    assert exc.value.code == "invalid_feed_url" and "pw12345" not in exc.value.message
    with pytest.raises(ApplicationError) as exc:
        FeedAdapter("https://feed.example.com:80a/bars", schema=schema)
    assert exc.value.code == "invalid_feed_url"
    with pytest.raises(ApplicationError) as exc:
        FeedAdapter("wss://feed.example.com/bars", schema="public")
    assert exc.value.code == "no_tenant"


# --- end to end: feed → decision stream → stored bars ----------------------------------------------------


def test_feed_bars_reach_the_decision_stream_and_are_stored_for_the_tenant(alpha, beta, schema, ws_feed, running):
    from intelligence.stream import TenantStream
    from marketdata.models import Bar

    for key in bus.client().scan_iter(f"stream:{schema}:*"):
        bus.client().delete(key)
    sent = [bar(H0 + 3600 * i, symbol="FEED-E2E", timeframe="1h", close=200 + i) for i in range(5)]
    off_the_hour = bar(H0 + 5 * 3600 + 60, symbol="FEED-E2E", timeframe="1h")
    feed = ws_feed([[sent[:3], [*sent[3:], off_the_hour]]])
    adapter = running(feed.url(), schema)
    wait_until(lambda: adapter.status()["published"] == 5, "5 bars published")
    stream = TenantStream(alpha.tenant, consumer_name="e2e", batch=50)
    stream.start()
    with mock.patch("intelligence.stream.publish_decisions"):
        while stream.run_once(block_ms=10):
            pass
    with schema_context(schema):
        stored = list(Bar.objects.filter(instrument__symbol="FEED-E2E").order_by("ts"))
        assert [int(b.ts.timestamp()) for b in stored] == [H0 + 3600 * i for i in range(5)]
        assert [b.close for b in stored] == [200.0, 201.0, 202.0, 203.0, 204.0]
    with schema_context(beta.tenant.schema_name):  # the other tenant got nothing
        assert not Bar.objects.filter(instrument__symbol="FEED-E2E").exists()
    assert adapter.status()["rejected"] == {"misaligned_timestamp": 1}
    for key in bus.client().scan_iter(f"stream:{schema}:*"):
        bus.client().delete(key)


# --- the command -----------------------------------------------------------------------------------------


def test_the_command_without_a_url_says_what_to_set(alpha, settings):
    settings.LEVEL3_DATA_STREAM_URL = ""
    with pytest.raises(CommandError, match="set LEVEL3_DATA_STREAM_URL .* or pass --url"):
        call_command("ingest_feed", "--tenant", alpha.slug)


def test_the_command_refuses_an_unknown_tenant_and_a_bad_url(alpha):
    with pytest.raises(CommandError, match="No active tenant 'nobody'"):
        call_command("ingest_feed", "--tenant", "nobody", "--url", "ws://127.0.0.1:9/bars")
    with pytest.raises(CommandError, match="invalid_feed_url"):
        call_command("ingest_feed", "--tenant", alpha.slug, "--url", "mqtt://broker/bars")


def _command(*args, env_extra=None) -> subprocess.Popen:
    from config.settings import services

    env = {k: v for k, v in os.environ.items() if k != "LEVEL3_DATA_STREAM_URL"}
    env.update(service_env())
    env["REDIS_DB_STREAMS"] = str(services.REDIS_DB_STREAMS)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, "manage.py", "ingest_feed", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Output:
    """A child's stdout and stderr, collected by threads (readable while it runs)."""

    def __init__(self, proc: subprocess.Popen):
        self.out: list[str] = []
        self.err: list[str] = []
        self.threads = [
            threading.Thread(target=self._read, args=(proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, self.err), daemon=True),
        ]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def join(self):
        for t in self.threads:
            t.join(timeout=10)


def test_the_optional_command_without_a_url_idles_quietly_and_exits_0_when_stopped(tenants_ab):
    # (honcho stops every process when one exits: an optional feed must not end `make run`)
    proc = _command("--tenant", tenants_ab[0].slug, "--optional")
    out = Output(proc)
    try:
        wait_until(lambda: "LEVEL3_DATA_STREAM_URL not set; no external feed" in out.stdout, "the message", 60)
        assert proc.poll() is None  # still there, idle
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out.join()
    assert out.stdout.strip() == "LEVEL3_DATA_STREAM_URL not set; no external feed"


def test_the_command_ingests_from_the_env_url_prints_progress_and_stops_on_ctrl_c(tenants_ab, schema, http_feed):
    feed = http_feed([bar(T0 + 60 * i, close=300 + i) for i in range(4)], token="cmd-T0KEN-5")
    url = feed.url(query="token=cmd-T0KEN-5")
    proc = _command(
        "--tenant",
        tenants_ab[0].tenant.schema_name,  # a schema name works as well as the slug
        "--poll-interval",
        "0.05",
        "--progress-every",
        "0.1",
        "--symbols",
        "FEED-A",
        env_extra={"LEVEL3_DATA_STREAM_URL": url},
    )
    out = Output(proc)
    try:
        wait_until(lambda: len(stream_events(schema)) == 4, "4 events from the command", 60)
        wait_until(lambda: "4 published" in out.stdout, "a progress line", 20)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out.join()
    assert [e["close"] for e in stream_events(schema)] == [300.0, 301.0, 302.0, 303.0]
    lines = out.stdout.splitlines()
    assert lines[0] == f"feed http://127.0.0.1:{feed.port}/bars?token=*** (http) -> tenant {tenants_ab[0].slug}"
    assert any("bars/s" in line and "0 rejected" in line for line in lines)
    assert lines[-1] == "stopped: 4 bar(s) received, 4 published, 0 rejected"
    assert "Traceback" not in out.stderr
    assert "cmd-T0KEN-5" not in out.stdout + out.stderr
