"""WebSocket connections dropped while decisions keep coming, against the feed's edge server as
deployed (``run_feed_edge`` in its own process): first every client's connection is cut from its
side (the network dropping it: no close frame), then the server is killed with SIGKILL and started
again on the same port. Each client reconnects with ``?cursor=<last cursor it saw>`` (the resume
protocol; ``&after=<last id>`` as its fallback): the server replays what it missed from the
tenant's resume log in Redis, then goes on live. Every client
ends with every decision id, contiguous and in order, none twice. With two writers (one holds each
id in its transaction while the other commits later ids: ids reach the sockets out of order, as
with two stream partitions), every client still ends with every id once, all in the same
(publish) order: resuming by id would skip the late ones, resuming by cursor does not."""

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.db import connection, transaction
from django_tenants.utils import schema_context
from websockets.asyncio.client import connect

from intelligence.feed import publish_decisions
from intelligence.models import Decision
from intelligence.selectors import decision_payload
from tests.conftest import service_env
from tests.faults.conftest import free_port, kill_group, spawn

CLIENTS = 4
DECISIONS = 240
RATE = 40  # decisions a second

# the test database must exist (the session's tenants live there); the decisions are committed by
# the producer's own connection (the edge process reads them to replay) and removed at the end
pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(scope="module")
def cleanup(tenants_ab, django_db_blocker):
    yield
    with django_db_blocker.unblock(), schema_context(tenants_ab[0].tenant.schema_name):
        Decision.objects.filter(symbol="WSD-USD").delete()


class Producer(threading.Thread):
    """The decision side: each decision committed, then published (as the stream does); ``hold``:
    seconds each id stays taken in its open transaction before the commit (a slow writer)."""

    def __init__(self, schema: str, count: int = DECISIONS, first_minute: int = 0, hold: float = 0.0):
        super().__init__(daemon=True)
        self.schema, self.ids = schema, []
        self.count, self.first_minute, self.hold = count, first_minute, hold
        self.error = None

    def run(self):
        try:
            base = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
            with schema_context(self.schema):
                for i in range(self.count):
                    with transaction.atomic():
                        d = Decision.objects.create(
                            source="api", symbol="WSD-USD", timeframe="1m",
                            ts=base + dt.timedelta(minutes=self.first_minute + i), action="HOLD", confidence=0.5,
                        )  # fmt: skip
                        payload = decision_payload(d)
                        transaction.on_commit(lambda p=payload: publish_decisions([p], self.schema))
                        time.sleep(self.hold)
                    self.ids.append(d.id)
                    time.sleep(1 / RATE)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            connection.close()


class Edge:
    def __init__(self, port: int):
        self.port, self.proc = port, None

    def start(self):
        self.proc = spawn(
            [sys.executable, "manage.py", "run_feed_edge", "--port", str(self.port)],
            cwd=settings.BASE_DIR, env={**os.environ, **service_env()}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline()
        assert line.startswith("decision feed on ws://"), line

    def kill(self):
        kill_group(self.proc)


class Client:
    """A feed client that reconnects with ``?cursor=<last cursor seen>`` whenever its socket drops
    (``?after=<id>`` before it has one, and as the fallback for an expired cursor)."""

    def __init__(self, url: str, key: str, after: int):
        self.url, self.key, self.last, self.cursor = url, key, after, None
        self.seen: list[int] = []
        self.connects = 0
        self.ws = None

    async def run(self, until):
        while not until():
            try:
                resume = f"after={self.last}" + (f"&cursor={self.cursor}" if self.cursor else "")
                async with connect(
                    f"{self.url}?{resume}", additional_headers={"Authorization": f"Api-Key {self.key}"},
                    open_timeout=3,
                ) as ws:  # fmt: skip
                    self.ws, self.connects = ws, self.connects + 1
                    while not until():
                        try:
                            msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                        except TimeoutError:
                            continue
                        if msg.get("type") == "decision":
                            self.seen.append(msg["id"])
                            self.last = msg["id"]
                            self.cursor = msg.get("cursor", self.cursor)
            except Exception:  # noqa: BLE001 - any drop (closed, refused, reset): reconnect
                pass
            self.ws = None
            await asyncio.sleep(0.1)

    def cut(self):
        """The network drops the connection: no close handshake, the socket just goes."""
        if self.ws is not None:
            self.ws.transport.abort()


@pytest.mark.parametrize("writers", [1, 2])
def test_dropped_sockets_resume_with_no_gap_and_no_repeat(
    tenants_ab, cleanup, django_db_blocker, fault_report, writers
):
    alpha = tenants_ab[0]
    schema = alpha.tenant.schema_name
    edge = Edge(free_port(18330))
    url = f"ws://127.0.0.1:{edge.port}/ws/decisions/"
    if writers == 1:
        producers = [Producer(schema)]
    else:  # the second holds each id for 4 of the first's decisions: its commits come late
        half = DECISIONS // 2
        producers = [Producer(schema, half), Producer(schema, half, first_minute=half, hold=4 / RATE)]
    started = time.monotonic()
    with django_db_blocker.unblock():
        with schema_context(schema):
            after = Decision.objects.order_by("-id").values_list("id", flat=True).first() or 0
        try:
            edge.start()
            clients = [Client(url, alpha.key, after) for _ in range(CLIENTS)]

            async def scenario():
                def finished():
                    ids = {i for p in producers for i in p.ids}
                    return len(ids) == DECISIONS and all(ids <= set(c.seen) for c in clients)

                deadline = time.monotonic() + 120
                until = lambda: finished() or time.monotonic() > deadline  # noqa: E731
                tasks = [asyncio.create_task(c.run(until)) for c in clients]
                await asyncio.sleep(1.0)  # all connected
                for p in producers:
                    p.start()
                # given decisions flowing, when every client's connection is cut from its side
                await asyncio.sleep(1.5)
                cut_at = sum(len(p.ids) for p in producers)
                for c in clients:
                    c.cut()
                # and then the server itself dies (SIGKILL) and is started again on the same port
                await asyncio.sleep(1.5)
                killed_at = sum(len(p.ids) for p in producers)
                await asyncio.to_thread(edge.kill)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(edge.start)
                await asyncio.gather(*tasks)
                return cut_at, killed_at

            cut_at, killed_at = asyncio.run(scenario())
            for p in producers:
                p.join(30)
                assert p.error is None, p.error
        finally:
            edge.kill()
    ids = sorted(i for p in producers for i in p.ids)
    assert len(ids) == DECISIONS
    inversions = sum(x < max(clients[0].seen[:n], default=0) for n, x in enumerate(clients[0].seen))
    for c in clients:
        assert c.cursor is not None  # it resumed by cursor
        assert c.connects >= 3  # it did lose its connection twice
        if writers == 1:  # then every client has every id once, in order (contiguous: nothing missed)
            assert c.seen == ids, (len(c.seen), c.connects)
        else:  # every id once, all clients in the one publish order (ids out of order in it)
            assert sorted(c.seen) == ids and c.seen == clients[0].seen, (len(c.seen), c.connects)
    if writers == 2:
        assert inversions > 0  # late commits did happen: resuming by id could have skipped them
    fault_report(
        f"{writers} writer(s), {CLIENTS} clients x {DECISIONS} decisions at {RATE}/s; all sockets cut at decision "
        f"{cut_at}, edge SIGKILLed at {killed_at} and restarted; {sum(c.connects for c in clients)} connections "
        f"in all; every client saw ids {ids[0]}..{ids[-1]} once ({inversions} after a higher id), "
        f"{'the same order on every socket' if writers == 2 else 'contiguous, in order'}; "
        f"{time.monotonic() - started:.0f} s"
    )
