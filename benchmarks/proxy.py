"""A tiny path-routing, round-robin TCP reverse proxy on loopback, for ``benchmarks.scaleout``.

It stands in for the load balancer of docs/deploy.md: one address; a connection whose first
request line asks for ``/ws/decisions/`` goes to the next edge process of the ``--ws`` pool,
anything else to the next web (gunicorn) process of the ``--http`` pool. Round robin per
connection, no stickiness (a keep-alive HTTP connection stays with the process it reached first,
as behind any L4 balancer). Bytes are piped both ways untouched, so the WebSocket upgrade and
frames pass through.

``python -m benchmarks.proxy --port P --http 127.0.0.1:A,127.0.0.1:B --ws 127.0.0.1:C,127.0.0.1:D``
prints ``READY`` once listening; on SIGTERM it prints one JSON line: connections per backend.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import sys

WS_PREFIX = b"/ws/decisions"
MAX_HEAD = 16 * 1024


class Pool:
    def __init__(self, name: str, backends: list[tuple[str, int]]):
        self.name = name
        self.backends = backends
        self._next = itertools.cycle(range(len(backends)))
        self.connections = [0] * len(backends)

    def pick(self) -> tuple[int, tuple[str, int]]:
        i = next(self._next)
        self.connections[i] += 1
        return i, self.backends[i]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof() if writer.can_write_eof() else writer.close()


class Proxy:
    def __init__(self, http: Pool, ws: Pool):
        self.http, self.ws = http, ws
        self.failed = 0

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            head = await client_r.readuntil(b"\r\n")  # the request line: METHOD PATH VERSION
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            client_w.close()
            return
        parts = head.split(b" ")
        path = parts[1] if len(parts) > 1 else b"/"
        pool = self.ws if path.startswith(WS_PREFIX) else self.http
        _, (host, port) = pool.pick()
        try:
            up_r, up_w = await asyncio.open_connection(host, port)
        except OSError:
            self.failed += 1
            client_w.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            client_w.close()
            return
        up_w.write(head)
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
        for w in (up_w, client_w):
            with contextlib.suppress(Exception):
                w.close()

    def stats(self) -> dict:
        return {
            "http": {f"{h}:{p}": n for (h, p), n in zip(self.http.backends, self.http.connections, strict=True)},
            "ws": {f"{h}:{p}": n for (h, p), n in zip(self.ws.backends, self.ws.connections, strict=True)},
            "failed": self.failed,
        }


def _backends(raw: str) -> list[tuple[str, int]]:
    out = []
    for item in raw.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host or "127.0.0.1", int(port)))
    return out


async def serve(host: str, port: int, http: list[tuple[str, int]], ws: list[tuple[str, int]]) -> dict:
    proxy = Proxy(Pool("http", http), Pool("ws", ws))
    server = await asyncio.start_server(proxy.handle, host, port, limit=MAX_HEAD, backlog=2048)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    async with server:
        await stop.wait()
    return proxy.stats()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (127.0.0.1).")
    parser.add_argument("--port", type=int, required=True, help="Port to listen on.")
    parser.add_argument("--http", required=True, help="Web backends, host:port,host:port.")
    parser.add_argument("--ws", required=True, help="/ws/decisions/ backends (edge processes), host:port,...")
    a = parser.parse_args(argv)
    stats = asyncio.run(serve(a.host, a.port, _backends(a.http), _backends(a.ws)))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
