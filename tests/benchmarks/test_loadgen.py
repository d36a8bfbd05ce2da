"""The live benchmarks' own tools: the open-loop HTTP client does not hide a stalled server
(coordinated omission) and bounds an overloaded run; the minimal WebSocket client reads every
frame size, fragmented messages and pings like a real client; the stage timer adds up."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks import loadgen
from benchmarks.live import Breakdown

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


def _run(coro):
    """``asyncio.run`` on a thread of its own: this thread may already run a loop (Playwright's
    sync API keeps one for the session once a browser test ran here first)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _server(handle):
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_a_stall_is_charged_to_every_request_due_during_it():
    async def scenario():
        seen = {"n": 0}

        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            seen["n"] += 1
            if seen["n"] == 20:  # given a server that stalls once for 300 ms
                await asyncio.sleep(0.3)
            writer.write(OK)
            await writer.drain()
            writer.close()

        server, port = await _server(handle)
        async with server:
            # when one client offers 100 req/s for 1 s
            return await loadgen.open_loop(port, loadgen.http_request("GET", "/"), rate=100, clients=1, seconds=1.0)

    result = _run(scenario())
    # then every request is answered, and the ~30 due during the stall carry it (a closed-loop
    # client would have recorded one slow request and simply sent fewer)
    assert result.ok == 100 and result.failed == 0
    assert sum(1 for x in result.latencies if x > 0.1) >= 15
    assert result.p(1.0) >= 280


def test_an_overloaded_run_ends_after_the_drain_and_counts_what_was_left():
    async def scenario():
        release = asyncio.Event()

        async def handle(reader, writer):  # given a server that answers nothing during the run
            await reader.readuntil(b"\r\n\r\n")
            await release.wait()
            writer.close()

        server, port = await _server(handle)
        async with server:
            started = time.monotonic()
            result = await loadgen.open_loop(
                port, loadgen.http_request("GET", "/"), rate=20, clients=2, seconds=0.5, drain=0.5
            )
            took = time.monotonic() - started
            release.set()
            return result, took

    result, took = _run(scenario())
    # then the run stops half a second after the last due time, every request counted as failed
    assert took < 2.0
    assert result.ok == 0 and result.failed == 10 and result.errors["unfinished"] == 10


def test_the_websocket_client_reads_every_frame_size_fragments_and_pings():
    from websockets.asyncio.server import serve

    messages = ["a", "b" * 200, "c" * 70_000]

    async def scenario():
        got, headers = [], {}
        done = asyncio.Event()

        async def handler(ws):
            headers["authorization"] = ws.request.headers.get("Authorization")
            for text in messages:
                await ws.send(text)
            await ws.send(["fr", "ag", "ment"])  # one message in three frames
            pong = await ws.ping(b"hi")
            await asyncio.wait_for(pong, 5)  # the client must answer pings or servers drop it
            await ws.send("done")
            await ws.wait_closed()

        def on_text(data: bytes) -> None:
            got.append(data.decode())
            if data == b"done":
                done.set()

        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            client = await loadgen.ws_connect(f"ws://127.0.0.1:{port}/feed/", [("Authorization", "Api-Key k")], on_text)
            await asyncio.wait_for(done.wait(), 5)
            client.transport.close()
        return got, headers

    got, headers = _run(scenario())
    assert got == [*messages, "fragment", "done"]
    assert headers["authorization"] == "Api-Key k"


def test_the_stage_timer_counts_exclusive_time_and_restores_what_it_wrapped():
    class Base:
        def inner(self):
            time.sleep(0.02)

    class Service(Base):
        def outer(self):
            time.sleep(0.01)
            self.inner()

    bd = Breakdown()
    bd.wrap(Service, "outer", "outer")
    bd.wrap(Service, "inner", "inner")  # inherited: restoring must remove the override
    started = time.perf_counter()
    Service().outer()
    total = time.perf_counter() - started
    bd.restore()
    assert "inner" not in vars(Service) and Service.outer.__name__ == "outer"
    assert bd.exclusive["inner"] >= 0.02 and 0.01 <= bd.exclusive["outer"] < 0.02
    assert abs(bd.exclusive["inner"] + bd.exclusive["outer"] - total) < 0.005
