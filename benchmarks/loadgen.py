"""Load generators for the live benchmarks (``benchmarks.live``): no Django here, so the pieces
that run in their own process start fast and stay small.

- :func:`open_loop`: HTTP/1.1 requests on a fixed timetable (wrk2's model). Request ``j`` is due at
  ``start + j / rate`` and belongs to client ``j % clients``; a client sends it when it is due or,
  if its previous request is still out, as soon as that one returns. Latency runs from the *due*
  time, so a stalled server shows up as latency instead of as fewer requests (no coordinated
  omission). Raw asyncio streams, no HTTP library: on 2 shared cores the client must be cheap.
- :func:`serve_http`: a trivial HTTP server (fixed body, ``Connection: close`` like gunicorn's
  sync workers) — the client's own floor.
- :func:`ws_fleet`: many WebSocket clients (:class:`_WsClient`, a minimal RFC 6455 client) in one
  process; each message's ``data.published_ns`` (``time.monotonic_ns()`` of the publisher;
  CLOCK_MONOTONIC is system-wide on Linux) gives the publish → receive latency.
- :func:`ws_floor_server`: the raw-broadcast floor: one Redis subscription, ``websockets.broadcast``
  of the message text to every socket (CONVENTIONS §4, third row).

Subprocess entry points: ``python -m benchmarks.loadgen {http-server|ws-fleet|ws-floor} ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

# ----------------------------------------------------------------------------- small helpers


def pct(values, q: float) -> float:
    """The ``q`` quantile (nearest rank, 0..1) of ``values``; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def raise_nofile(want: int = 65536) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``want`` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def http_request(method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request (Host 127.0.0.1)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ----------------------------------------------------------------------------- open-loop HTTP client


@dataclass
class LoadResult:
    rate: float
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # s, due time -> last response byte
    send_lag: list[float] = field(default_factory=list)  # s, due time -> request written
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # exception name -> count
    scheduled: int = 0
    elapsed: float = 0.0  # s, first due time -> last response

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        """Requests without an expected status: transport errors, timeouts, other statuses."""
        return self.scheduled - self.ok

    def p(self, q: float) -> float:
        """Latency quantile in ms."""
        return pct(self.latencies, q) * 1000

    def line(self, label: str) -> str:
        """One printed line: offered and completed rate, latency, errors, and how late the client
        itself sent (a late send with an idle server means the client is the bottleneck)."""
        done = self.ok / self.elapsed if self.elapsed else 0.0
        errors = dict(self.errors)
        errors.update({f"HTTP {s}": n for s, n in self.statuses.items() if s not in _EXPECTED})
        return (
            f"{label:<32} {self.rate:4.0f} req/s -> {done:4.0f} done/s   "
            f"p50 {self.p(0.5):7.2f} ms   p99 {self.p(0.99):7.2f} ms   max {self.p(1.0):7.1f} ms   "
            f"errors {self.failed}{' ' + str(errors) if errors else ''}   "
            f"(send lag p99 {pct(self.send_lag, 0.99) * 1000:.1f} ms)"
        )


_EXPECTED = (200, 201)


async def _exchange(held: list, host: str, port: int, payload: bytes) -> int:
    """One request/response on ``held[0]`` (a (reader, writer) kept alive) or a new connection;
    leaves the connection in ``held[0]``, or None when the server closes it. Returns the status."""
    if held[0] is None:
        held[0] = await asyncio.open_connection(host, port)
    reader, writer = held[0]
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, close, chunked = None, head.startswith(b"HTTP/1.0"), False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()  # until the server closes
        close = True
    if close:
        _drop(held)
    return status


def _drop(held: list) -> None:
    if held[0] is not None:
        held[0][1].close()
        held[0] = None


_TRANSPORT_ERRORS = (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


async def open_loop(
    port: int,
    payload: bytes,
    *,
    rate: float,
    clients: int = 50,
    seconds: float = 10.0,
    timeout: float = 10.0,
    drain: float = 5.0,
    host: str = "127.0.0.1",
) -> LoadResult:
    """Send ``payload`` (a whole HTTP request) at ``rate`` per second for ``seconds`` from ``clients``
    connections (reconnecting when the server closes, as gunicorn's sync workers always do).
    Whatever is not answered ``drain`` seconds after the last due time counts as ``unfinished``:
    an overloaded server costs at most that long."""
    result = LoadResult(rate=rate, clients=clients, seconds=seconds)
    total = int(rate * seconds)
    result.scheduled = total
    clock = time.monotonic
    start = clock() + 0.05
    finished = [start]

    async def client(i: int) -> None:
        held = [None]
        try:
            for j in range(i, total, clients):
                due = start + j / rate
                delay = due - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = clock()
                try:
                    status = await asyncio.wait_for(_exchange(held, host, port, payload), timeout)
                except _TRANSPORT_ERRORS as e:
                    result.errors[type(e).__name__] += 1
                    _drop(held)
                    continue
                done = clock()
                result.statuses[status] += 1
                if status in _EXPECTED:
                    result.latencies.append(done - due)
                    result.send_lag.append(sent - due)
                finished[0] = max(finished[0], done)
        finally:
            _drop(held)

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, start + seconds + drain - clock()))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    unfinished = total - sum(result.statuses.values()) - sum(result.errors.values())
    if unfinished:
        result.errors["unfinished"] = unfinished
    result.elapsed = finished[0] - start
    return result


def run_open_loop(port: int, payload: bytes, **kw) -> LoadResult:
    return asyncio.run(open_loop(port, payload, **kw))


async def closed_loop(port: int, payload: bytes, *, clients: int, requests: int, timeout: float = 30.0) -> list[int]:
    """``requests`` requests per client, each sent when the previous returned (warm-up, settling);
    returns the statuses (0: transport error)."""
    statuses: list[int] = []

    async def client() -> None:
        held = [None]
        try:
            for _ in range(requests):
                try:
                    statuses.append(await asyncio.wait_for(_exchange(held, "127.0.0.1", port, payload), timeout))
                except _TRANSPORT_ERRORS:
                    statuses.append(0)
                    _drop(held)
        finally:
            _drop(held)

    await asyncio.gather(*(client() for _ in range(clients)))
    return statuses


def run_closed_loop(port: int, payload: bytes, **kw) -> list[int]:
    return asyncio.run(closed_loop(port, payload, **kw))


# ----------------------------------------------------------------------------- trivial HTTP server


async def serve_http(port: int, body_size: int = 3200) -> None:
    """Answer every request with ``201`` and a fixed JSON body (about a decision's size), then close
    (gunicorn's sync workers do)."""
    body = b'{"pad":"' + b"x" * max(0, body_size - 10) + b'"}'
    response = (
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    await reader.readexactly(int(line[15:]))
            writer.write(response)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=2048)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


# ----------------------------------------------------------------------------- WebSocket fleet


class _WsClient(asyncio.Protocol):
    """A minimal RFC 6455 client: handshake, unmasked server frames in, masked pong/close out.
    Much cheaper per message than a general-purpose library, so with 1,000 sockets in one process
    the client's floor stays low and the server's share of the latency shows."""

    def __init__(self, request: bytes, on_text):
        self.request = request
        self.on_text = on_text
        self.buffer = bytearray()
        self.fragments = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[9:12])
            del self.buffer[: end + 4]
            if status != b"101":
                self.upgraded.set_exception(ConnectionError(f"handshake refused: HTTP {status.decode()}"))
                self.transport.close()
                return
            self.upgraded.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buf = self.buffer
        pos = 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4]), 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10]), 10
            if len(buf) - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            opcode = b0 & 0x0F
            if opcode in (0x1, 0x2, 0x0):
                if b0 & 0x80 and not self.fragments:
                    self.on_text(payload)
                else:
                    self.fragments += payload
                    if b0 & 0x80:
                        self.on_text(bytes(self.fragments))
                        self.fragments.clear()
            elif opcode == 0x9:  # ping: a pong with the same payload (servers drop silent clients)
                self._send(0xA, payload)
            elif opcode == 0x8:
                self._send(0x8, payload[:2])
                self.transport.close()
        del buf[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def connection_lost(self, exc) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)


async def ws_connect(url: str, headers: list[tuple[str, str]], on_text, timeout: float = 30.0) -> _WsClient:
    """Open one WebSocket to ``ws://host:port/path`` and call ``on_text(bytes)`` for each message."""
    import base64
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {parts.hostname}:{parts.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(lambda: _WsClient(request, on_text), parts.hostname, parts.port), timeout
    )
    try:
        await asyncio.wait_for(asyncio.shield(protocol.upgraded), timeout)
    except BaseException:
        protocol.transport.abort()
        raise
    return protocol


async def ws_fleet(url: str, count: int, headers: list[tuple[str, str]], connect_concurrency: int = 50) -> None:
    """Hold ``count`` WebSocket clients; protocol on stdin/stdout (JSON lines):

    out ``{"ready": connected, "failed": n, "connect_s": t}`` once every handshake is done;
    in ``{"ids": [...], "wait_s": w}`` after the publisher is done: wait up to ``w`` s for every
    client to have every id, then out ``{"latencies_ms": [...], "received", "lost", "duplicates",
    "closed", "unstamped"}`` (``unstamped``: decisions without ``published_ns``, e.g. the live
    stream's, counted over all clients but not timed).
    """
    import orjson

    raise_nofile(count + 256)
    clock = time.monotonic_ns
    seen: list[set[int]] = [set() for _ in range(count)]
    latencies: list[int] = []
    duplicates, malformed, unstamped = [0], [0], [0]
    progress = asyncio.Event()
    gate = asyncio.Semaphore(connect_concurrency)

    def receiver(i: int):
        mine = seen[i]

        def on_text(text: bytes) -> None:
            now = clock()
            try:
                message = orjson.loads(text)
                if message.get("type") != "decision":
                    return  # heartbeats, subscription acks
                ident, published = message["id"], message["data"].get("published_ns")
            except (ValueError, KeyError, TypeError, AttributeError):
                malformed[0] += 1
                return
            if published is None:  # a real decision (e.g. the live stream's), not a timed probe
                unstamped[0] += 1
                return
            if ident in mine:
                duplicates[0] += 1
                return
            mine.add(ident)
            latencies.append(now - published)
            progress.set()

        return on_text

    async def open_one(i: int):
        last = None
        async with gate:
            for _ in range(3):
                try:
                    return await ws_connect(url, headers, receiver(i))
                except (OSError, TimeoutError) as e:  # e.g. a full listen backlog: retry
                    last = e
                    await asyncio.sleep(0.2)
            print(f"connect failed: {type(last).__name__}: {last}", file=sys.stderr)
            return None

    t = time.perf_counter()
    sockets = await asyncio.gather(*(open_one(i) for i in range(count)))
    connect_s = time.perf_counter() - t
    live = [(i, ws) for i, ws in enumerate(sockets) if ws is not None]
    print(json.dumps({"ready": len(live), "failed": count - len(live), "connect_s": connect_s}), flush=True)

    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    order = json.loads(line)
    want = set(order["ids"])
    deadline = time.monotonic() + order["wait_s"]
    while time.monotonic() < deadline:
        if all(want <= seen[i] for i, _ in live):
            break
        progress.clear()
        try:
            await asyncio.wait_for(progress.wait(), timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
    received = sum(len(seen[i] & want) for i in range(count))
    out = {
        "latencies_ms": [x / 1e6 for x in latencies],
        "received": received,
        "lost": len(want) * count - received,  # clients that never connected lose every message
        "duplicates": duplicates[0],
        "malformed": malformed[0],
        "unstamped": unstamped[0],  # decisions without a publish stamp, summed over clients
        "closed": sum(1 for _, ws in live if ws.closed.done()),  # by the server, before the end
    }
    for _, ws in live:
        ws.transport.abort()  # no closing handshakes: 1,000 of them would only add noise
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


async def ws_floor_server(port: int, redis_url: str, channel: str, symbols: frozenset[str] | None = None) -> None:
    """A minimal feed: subscribe once, broadcast each message's text (the feed wire format
    ``<symbol>\\n<id>\\n<json>``) to every connected socket; with ``symbols``, only those symbols'
    messages (what a feed client filtering on them receives). Handshake headers are ignored."""
    import redis.asyncio as aioredis
    from websockets.asyncio.server import broadcast, serve

    raise_nofile()
    sockets: set = set()

    async def handler(ws) -> None:
        sockets.add(ws)
        try:
            await ws.wait_closed()
        finally:
            sockets.discard(ws)

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, backlog=2048):
        client = aioredis.Redis.from_url(redis_url)
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        print("READY", flush=True)
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            symbol, _, text = message["data"].split(b"\n", 2)
            if symbols is None or symbol.decode() in symbols:
                broadcast(sockets, text, text=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("http-server", help="trivial HTTP server (the client's floor)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--body-size", type=int, default=3200)  # about a decision's JSON
    p = sub.add_parser("ws-fleet", help="hold many WebSocket clients (JSON lines on stdin/stdout)")
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    p = sub.add_parser("ws-floor", help="raw-broadcast WebSocket server fed by one Redis subscription")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--channel", required=True)
    p.add_argument("--symbols", help="comma-separated: broadcast only these symbols' messages")
    args = parser.parse_args(argv)
    if args.cmd == "http-server":
        asyncio.run(serve_http(args.port, args.body_size))
    elif args.cmd == "ws-fleet":
        headers = [tuple(part.strip() for part in h.split(":", 1)) for h in args.header]
        asyncio.run(ws_fleet(args.url, args.count, headers))
    else:
        symbols = frozenset(args.symbols.split(",")) if args.symbols else None
        asyncio.run(ws_floor_server(args.port, args.redis_url, args.channel, symbols))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
