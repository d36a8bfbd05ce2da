"""The decision feed ``ws/decisions/`` on its edge server (intelligence/edge.py): a tenant hears
only its own decisions, narrows them by symbol, resumes after an id without gaps or repeats,
resumes after a cursor exactly even when two writers commit out of id order (a trimmed cursor
falls back to the id or closes 4009), a slow client is dropped with 4008; browsers connect with
a one-use ticket, other clients with an API-key header, subprotocol or query; a refused handshake
says what to send."""

import asyncio
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django_tenants.utils import schema_context
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from intelligence import edge, feed
from intelligence.models import Decision
from intelligence.selectors import decision_payload
from tests.conftest import service_env

pytestmark = pytest.mark.django_db(transaction=False)


def _payload(i: int, symbol: str = "BTC-USD", pad: int = 0) -> dict:
    p = {"id": i, "symbol": symbol, "timeframe": "1m", "action": "BUY", "confidence": 0.6}
    if pad:
        p["explanation"] = "x" * pad
    return p


def _publish(schema: str, payloads: list[dict]):
    return sync_to_async(feed.publish_decisions)(payloads, schema)


async def _recv(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def _nothing(ws, timeout: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), timeout)
    except TimeoutError:
        return True
    return False


def _serve(scenario, **hub_kw):
    """Run ``scenario(hub, url)`` against an edge server on a free port in this process."""

    async def main():
        hub = edge.Hub(**hub_kw)
        async with hub.serve("127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            await scenario(hub, f"ws://127.0.0.1:{port}")

    asyncio.run(main())


def test_each_tenant_hears_only_its_own_decisions_and_can_narrow_them(alpha, beta):
    async def scenario(hub, url):
        a = await connect(f"{url}/ws/decisions/?api_key={alpha.key}")
        b = await connect(f"{url}/ws/decisions/", additional_headers={"Authorization": f"Api-Key {beta.key}"})
        only_eth = await connect(f"{url}/ws/decisions/?symbols=eth-usd", subprotocols=[f"api-key.{alpha.key}"])
        assert only_eth.subprotocol == f"api-key.{alpha.key}"
        await _publish(alpha.tenant.schema_name, [_payload(1), _payload(2, "ETH-USD")])
        got = [await _recv(a) for _ in range(2)]
        assert [(m["id"], m["type"], m["data"]["symbol"]) for m in got] == [
            (1, "decision", "BTC-USD"),
            (2, "decision", "ETH-USD"),
        ]
        assert (await _recv(only_eth))["id"] == 2
        assert await _nothing(b) and await _nothing(only_eth)
        await a.send(json.dumps({"action": "subscribe", "symbols": ["eth-usd"]}))
        assert (await _recv(a)) == {"type": "subscribed", "symbols": ["ETH-USD"]}
        await _publish(alpha.tenant.schema_name, [_payload(3), _payload(4, "ETH-USD")])
        assert (await _recv(a))["id"] == 4
        assert await _nothing(a)
        assert (await _recv(only_eth))["id"] == 4
        await only_eth.send(json.dumps({"action": "subscribe", "symbols": []}))  # all again
        assert (await _recv(only_eth)) == {"type": "subscribed", "symbols": []}
        await _publish(alpha.tenant.schema_name, [_payload(5)])
        assert (await _recv(only_eth))["id"] == 5
        await _publish(beta.tenant.schema_name, [_payload(1)])
        assert (await _recv(b))["id"] == 1
        assert await _nothing(a)
        assert hub.stats()["tenants"] == 2 and hub.stats()["sockets"] == 3
        for c in (a, b, only_eth):
            await c.close()

    _serve(scenario)


@pytest.fixture(scope="module")
def committed_decisions(tenants_ab, django_db_blocker):
    """Three decisions the server's own DB thread can see (committed before the test's
    transaction opens), removed afterwards."""
    alpha = tenants_ab[0]
    with django_db_blocker.unblock(), schema_context(alpha.tenant.schema_name):
        rows = [
            Decision.objects.create(
                source="api",
                symbol="BTC-USD",
                timeframe="1m",
                ts=dt.datetime(2024, 1, 1, 0, i, tzinfo=dt.UTC),
                action="HOLD",
                confidence=0.5,
            )
            for i in range(3)
        ]
    yield rows
    with django_db_blocker.unblock(), schema_context(alpha.tenant.schema_name):
        Decision.objects.filter(pk__in=[d.pk for d in rows]).delete()


def test_resume_after_an_id_replays_then_continues_live_without_repeats(alpha, committed_decisions):
    first, second, third = committed_decisions

    async def scenario(hub, url):
        c = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&after={first.id}")
        replayed = [await _recv(c) for _ in range(2)]
        assert [m["id"] for m in replayed] == [second.id, third.id]
        assert replayed[0]["data"] == json.loads(feed.message_text(decision_payload(second)))["data"]
        # a live copy of an id already replayed is not sent again; the next one is
        await _publish(alpha.tenant.schema_name, [_payload(third.id), _payload(third.id + 1)])
        assert (await _recv(c))["id"] == third.id + 1
        assert await _nothing(c)
        # narrowed resume: nothing of another symbol is replayed
        eth = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&after={first.id}&symbols=ETH-USD")
        assert await _nothing(eth)
        for ws in (c, eth):
            await ws.close()

    _serve(scenario)


def test_messages_published_while_a_resume_is_read_wait_and_arrive_once(alpha, committed_decisions):
    first, second, third = committed_decisions
    real_backlog = edge._backlog

    def slow_backlog(*args):
        rows = real_backlog(*args)
        # a live copy of a replayed decision and a new one, published during the replay
        feed.publish_decisions([_payload(third.id), _payload(third.id + 7)], alpha.tenant.schema_name)
        return rows

    async def scenario(hub, url):
        with mock.patch.object(edge, "_backlog", slow_backlog):
            c = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&after={first.id}")
            ids = [(await _recv(c))["id"] for _ in range(3)]
        assert ids == [second.id, third.id, third.id + 7]
        assert await _nothing(c)
        await c.close()

    _serve(scenario)


def test_a_client_that_does_not_keep_up_is_dropped_with_4008(alpha):
    async def scenario(hub, url):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that barely reads
        sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        slow = await connect(f"{url}/ws/decisions/?api_key={alpha.key}", sock=sock, max_queue=1)
        fast = await connect(f"{url}/ws/decisions/?api_key={alpha.key}")
        sent = 0
        for _ in range(40):
            await _publish(alpha.tenant.schema_name, [_payload(sent + i + 1, pad=32_000) for i in range(10)])
            sent += 10
            for _ in range(10):
                assert (await _recv(fast))["type"] == "decision"  # the fast client is unaffected
            if hub.dropped:
                break
        assert hub.dropped == 1 and hub.stats()["sockets"] == 1
        received = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(slow.recv(), 15)
                received += 1
        assert closed.value.rcvd.code == edge.SLOW_CLIENT and 0 < received < sent
        await _publish(alpha.tenant.schema_name, [_payload(sent + 1)])
        assert (await _recv(fast))["id"] == sent + 1
        await fast.close()

    _serve(scenario, buffer_limit=64 * 1024)


def test_browsers_connect_with_a_one_use_ticket(alpha):
    r = alpha.client(role="viewer").post("/api/v1/ws-tickets/")
    assert r.status_code == 201 and r.json()["expires_in"] == 60
    ticket = r.json()["ticket"]

    async def scenario(hub, url):
        c = await connect(f"{url}/ws/decisions/?ticket={ticket}")
        await _publish(alpha.tenant.schema_name, [_payload(7)])
        assert (await _recv(c))["id"] == 7
        await c.close()
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{url}/ws/decisions/?ticket={ticket}")
        assert refused.value.response.status_code == 401

    _serve(scenario)
    assert alpha.client(scope="read").post("/api/v1/ws-tickets/").status_code == 201


def test_refused_handshakes_say_what_to_send_and_nothing_is_kept(alpha):
    async def scenario(hub, url):
        for bad in ("", "?api_key=nope", "?ticket=nope", "?token=nope"):
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"{url}/ws/decisions/{bad}")
            assert refused.value.response.status_code == 401
            assert b"Authorization: Api-Key" in refused.value.response.body
        with pytest.raises(InvalidStatus) as missing:
            await connect(f"{url}/ws/elsewhere/?api_key={alpha.key}")
        assert missing.value.response.status_code == 404
        assert hub.stats()["sockets"] == 0 and hub.stats()["tenants"] == 0

    _serve(scenario)


def test_commands_heartbeat_and_health(alpha):
    async def scenario(hub, url):
        c = await connect(f"{url}/ws/decisions/?api_key={alpha.key}")
        await c.send("{not json")
        assert (await _recv(c)) == {"type": "error", "error": "not JSON"}
        await c.send(json.dumps({"action": "subscribe", "symbols": "BTC-USD"}))
        assert (await _recv(c)) == {"type": "error", "error": "symbols must be a list"}
        await c.send(json.dumps({"action": "dance"}))
        assert (await _recv(c))["type"] == "error"
        await c.send(json.dumps({"action": "ping"}))
        assert (await _recv(c)) == {"type": "pong"}
        with mock.patch.object(edge, "HEARTBEAT_S", 0.05):
            beat = asyncio.create_task(hub.heartbeat())
            try:
                assert (await _recv(c)) == {"type": "heartbeat"}
            finally:
                beat.cancel()
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = (await asyncio.wait_for(reader.read(4096), 5)).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"application/json" in head
        assert json.loads(body)["sockets"] == 1
        writer.close()
        await c.close()

    _serve(scenario)


def test_the_command_serves_the_feed_as_make_run_starts_it(alpha):
    """``manage.py run_feed_edge`` (the Procfile's ``edge`` line) in its own process."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_feed_edge", "--port", "0"],
        env={**os.environ, **service_env()},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("decision feed on ws://"), line
        url = line.split(" on ", 1)[1].strip()

        async def scenario():
            c = await connect(url, additional_headers={"Authorization": f"Api-Key {alpha.key}"})
            await _publish(alpha.tenant.schema_name, [_payload(11)])
            assert (await _recv(c, 10))["id"] == 11
            await c.close()

        asyncio.run(scenario())
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_a_plan_caps_open_connections_across_edge_processes(beta):
    """Free plan: 5 sockets in all, counted over two edge servers (two processes' hubs); the sixth
    is refused with 429 saying what to do; closing one frees its slot at once."""
    from tenants import limits

    cap = limits.plan_limit(beta.tenant, "websocket_connections")

    async def main():
        first, second = edge.Hub(), edge.Hub()
        async with first.serve("127.0.0.1", 0) as s1, second.serve("127.0.0.1", 0) as s2:
            urls = [
                f"ws://127.0.0.1:{s.sockets[0].getsockname()[1]}/ws/decisions/?api_key={beta.key}" for s in (s1, s2)
            ]
            open_ = [await connect(urls[i % 2]) for i in range(cap)]
            assert await sync_to_async(limits.ws_connections)(beta.tenant.schema_name) == cap
            with pytest.raises(InvalidStatus) as refused:
                await connect(urls[1])
            response = refused.value.response
            assert response.status_code == 429 and response.headers["Retry-After"] == "30"
            assert b"websocket_connections_exceeded" in response.body and b"upgrade the plan" in response.body
            assert first.stats()["refused_over_plan"] + second.stats()["refused_over_plan"] == 1
            await open_[0].close()
            await asyncio.sleep(0.2)  # the slot is released off the event loop
            again = await connect(urls[0])
            for ws in [*open_[1:], again]:
                await ws.close()
            await asyncio.sleep(0.2)
            assert await sync_to_async(limits.ws_connections)(beta.tenant.schema_name) == 0

    asyncio.run(main())


def test_a_live_configuration_change_is_told_to_the_tenants_sockets(alpha, beta):
    """Hot reload at the edge: a prod change arrives over the channel layer as a ``config`` notice
    on the tenant's sockets only; a dev change is not the feed's concern."""
    from configuration import reload

    async def scenario(hub, url):
        a = await connect(f"{url}/ws/decisions/?api_key={alpha.key}")
        b = await connect(f"{url}/ws/decisions/?api_key={beta.key}")
        await sync_to_async(reload.publish)(alpha.tenant.schema_name, "dev", 4, ["controls.max_position"])
        await sync_to_async(reload.publish)(alpha.tenant.schema_name, "prod", 7, ["feed.publish"])
        assert await _recv(a) == {"type": "config", "environment": "prod", "version": 7, "changed": ["feed.publish"]}
        assert await _nothing(a) and await _nothing(b)
        for c in (a, b):
            await c.close()

    _serve(scenario)


# ----------------------------------------------------------------------------- the cursor


def _commit_and_publish(schema: str, minute: int, held: threading.Event | None = None, go=None) -> dict:
    """A writer on its own connection: a decision stored in a transaction that publishes on commit
    (as the stream and the REST view do); with ``held``/``go`` it takes its id, says so, and
    commits only when told (a slow concurrent writer)."""
    try:
        with schema_context(schema), transaction.atomic():
            d = Decision.objects.create(
                source="api", symbol="CUR-USD", timeframe="1m", ts=dt.datetime(2032, 1, 1, 0, minute, tzinfo=dt.UTC),
                action="BUY", confidence=0.7,
            )  # fmt: skip
            payload = decision_payload(d)
            transaction.on_commit(lambda: feed.publish_decisions([payload], schema))
            if held is not None:
                held.set()
                assert go.wait(30)
        return payload
    finally:
        connection.close()


@pytest.fixture
def cursor_rows(alpha, django_db_blocker):
    """The writers' rows, committed on their own connections, deleted on another one (this
    thread's is inside the test's rolled-back transaction)."""
    yield

    def delete():
        try:
            with schema_context(alpha.tenant.schema_name):
                Decision.objects.filter(symbol="CUR-USD").delete()
        finally:
            connection.close()

    with django_db_blocker.unblock():
        cleaner = threading.Thread(target=delete)
        cleaner.start()
        cleaner.join(30)


def test_a_decision_committed_late_by_another_writer_is_resumed_by_cursor_once(alpha, cursor_rows, django_db_blocker):
    """Two writers: the first takes id N and commits late; the second takes N+1, commits and is
    published; the client sees N+1 and disconnects; then N commits and is published. Resuming
    with the last cursor gets N, once; resuming by id (after N+1) cannot."""
    schema = alpha.tenant.schema_name
    held, go, out = threading.Event(), threading.Event(), {}

    def slow_writer():
        out["late"] = _commit_and_publish(schema, 1, held, go)

    async def scenario(hub, url):
        c = await connect(f"{url}/ws/decisions/?api_key={alpha.key}")
        first = threading.Thread(target=slow_writer)
        first.start()
        assert await asyncio.to_thread(held.wait, 30)
        early = await asyncio.to_thread(_commit_and_publish, schema, 2)
        got = await _recv(c)
        assert got["id"] == early["id"] and got["id"] > 0
        cursor = got["cursor"]
        await c.close()
        go.set()
        await asyncio.to_thread(first.join, 30)
        late = out["late"]
        assert late["id"] < early["id"]  # the id was taken first, the commit came last
        by_cursor = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&cursor={cursor}")
        by_id = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&after={early['id']}")
        resumed = await _recv(by_cursor)
        assert (resumed["id"], resumed["type"], resumed["data"]) == (late["id"], "decision", late)
        assert feed.parse_cursor(resumed["cursor"]) > feed.parse_cursor(cursor)
        assert await _nothing(by_cursor)  # neither the late one again nor the one already seen
        assert await _nothing(by_id)  # the id protocol's blind spot, documented
        await _publish(schema, [_payload(early["id"] + 1000, "CUR-USD")])
        for ws in (by_cursor, by_id):
            assert (await _recv(ws))["id"] == early["id"] + 1000
            assert await _nothing(ws)
            await ws.close()

    with django_db_blocker.unblock():
        _serve(scenario)


async def _cursors(url: str, key: str, schema: str, payloads: list[dict]) -> list[str]:
    c = await connect(f"{url}/ws/decisions/?api_key={key}")
    await _publish(schema, payloads)
    cursors = [(await _recv(c))["cursor"] for _ in payloads]
    await c.close()
    return cursors


@pytest.mark.parametrize("page", [1, 500])
def test_a_cursor_resume_merges_what_is_published_during_the_replay_once(alpha, page):
    """Pages of 1: the new messages are replayed from the log and their live copies dropped;
    one page: they wait and are sent after the replay. Either way each arrives once, in order."""
    schema = alpha.tenant.schema_name
    real_with_cursor, published = feed.with_cursor, []

    def publishing_with_cursor(text, cursor):  # the replay is under way: two more decisions come
        if not published:
            published.append(cursor)
            feed.publish_decisions([_payload(9001, "ETH-USD"), _payload(9002)], schema)
        return real_with_cursor(text, cursor)

    async def scenario(hub, url):
        cursors = await _cursors(url, alpha.key, schema, [_payload(i) for i in (101, 102, 103)])
        with mock.patch.object(edge, "LOG_PAGE", page), mock.patch.object(feed, "with_cursor", publishing_with_cursor):
            c = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&cursor={cursors[0]}")
            got = [await _recv(c) for _ in range(4)]
            assert await _nothing(c)
        assert [m["id"] for m in got] == [102, 103, 9001, 9002]
        assert [m["cursor"] for m in got[:2]] == cursors[1:]
        assert sorted(got, key=lambda m: feed.parse_cursor(m["cursor"])) == got
        # narrowed to a symbol, the replay skips the others
        only_eth = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&cursor={cursors[0]}&symbols=ETH-USD")
        assert (await _recv(only_eth))["id"] == 9001 and await _nothing(only_eth)
        # live again afterwards
        await _publish(schema, [_payload(9003)])
        assert (await _recv(c))["id"] == 9003 and await _nothing(c)
        for ws in (c, only_eth):
            await ws.close()

    _serve(scenario)


def test_a_trimmed_cursor_falls_back_to_the_id_or_closes_4009(alpha, committed_decisions):
    """Entries after the cursor were trimmed (retention, or a Redis that lost the log): with
    ``after`` the edge says so and replays by id; without, it closes 4009 pointing at REST. A
    cursor that is no entry id is refused at the handshake."""
    first, second, third = committed_decisions
    schema = alpha.tenant.schema_name

    async def scenario(hub, url):
        cursors = await _cursors(url, alpha.key, schema, [_payload(i) for i in (201, 202, 203)])
        await sync_to_async(feed._redis().xtrim)(feed.log_key(schema), maxlen=2, approximate=False)  # 201 is gone
        c = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&cursor={cursors[0]}")
        with pytest.raises(ConnectionClosed) as closed:
            await _recv(c)
        assert closed.value.rcvd.code == edge.CURSOR_EXPIRED
        assert "GET /api/v1/decisions/?after=" in closed.value.rcvd.reason
        # the cursor of the entry still kept resumes exactly
        ok = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&cursor={cursors[1]}")
        assert (await _recv(ok))["id"] == 203 and await _nothing(ok)
        await ok.close()
        fallback = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&cursor={cursors[0]}&after={first.id}")
        assert await _recv(fallback) == {"type": "cursor_expired", "after": first.id}
        assert [(await _recv(fallback))["id"] for _ in range(2)] == [second.id, third.id]
        assert await _nothing(fallback)
        await _publish(schema, [_payload(third.id + 1)])
        assert (await _recv(fallback))["id"] == third.id + 1
        await fallback.close()
        await sync_to_async(feed._redis().delete)(feed.log_key(schema))  # the log lost altogether
        gone = await connect(f"{url}/ws/decisions/?api_key={alpha.key}&cursor={cursors[2]}")
        with pytest.raises(ConnectionClosed) as closed:
            await _recv(gone)
        assert closed.value.rcvd.code == edge.CURSOR_EXPIRED
        for bad in ("abc", "12", "1-2-3", "-1-0"):
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"{url}/ws/decisions/?api_key={alpha.key}&cursor={bad}")
            assert refused.value.response.status_code == 400 and b"invalid_cursor" in refused.value.response.body

    _serve(scenario)
