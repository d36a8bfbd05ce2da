"""The scale-out exercise's reverse proxy (benchmarks/proxy.py): a connection asking for
``/ws/decisions/`` goes to the edge pool, anything else to the web pool, each pool round robin per
connection, bytes passed untouched both ways; a backend that is down gets a 502."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from benchmarks import proxy


def _run(coro):
    with ThreadPoolExecutor(1) as pool:  # a loop of its own, whatever this thread runs
        return pool.submit(asyncio.run, coro).result()


async def _backend(name: str):
    async def handle(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        body = name.encode() + b" " + request.split(b"\r\n", 1)[0]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, ("127.0.0.1", server.sockets[0].getsockname()[1])


async def _get(port: int, path: str, *, raw: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data if raw else data.split(b"\r\n\r\n", 1)[1]


def test_paths_go_to_their_pool_round_robin_and_a_dead_backend_gives_502():
    async def scenario():
        servers = [await _backend(name) for name in ("web0", "web1", "edge0", "edge1")]
        (_, w0), (_, w1), (_, e0), (_, e1) = servers
        p = proxy.Proxy(proxy.Pool("http", [w0, w1]), proxy.Pool("ws", [e0, e1]))
        front = await asyncio.start_server(p.handle, "127.0.0.1", 0)
        port = front.sockets[0].getsockname()[1]
        answers = [await _get(port, path) for path in ("/api/v1/x?a=1", "/health", "/ws/decisions/?k=1", "/api/v1/y")]
        answers.append(await _get(port, "/ws/decisions/"))
        for server, _ in servers[:2]:
            server.close()
            await server.wait_closed()
        down = await _get(port, "/api/v1/z", raw=True)
        front.close()
        return answers, down, p.stats()

    answers, down, stats = _run(scenario())
    # given two web and two edge backends, when five requests come in: web0, web1, edge0, web0, edge1
    assert answers == [
        b"web0 GET /api/v1/x?a=1 HTTP/1.1",
        b"web1 GET /health HTTP/1.1",
        b"edge0 GET /ws/decisions/?k=1 HTTP/1.1",
        b"web0 GET /api/v1/y HTTP/1.1",
        b"edge1 GET /ws/decisions/ HTTP/1.1",
    ]
    assert down.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")  # web1 is down
    assert stats["failed"] == 1
    assert list(stats["http"].values()) == [2, 2] and list(stats["ws"].values()) == [1, 1]
