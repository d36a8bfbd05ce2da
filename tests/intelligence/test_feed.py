"""The decision feed over WebSocket: a tenant hears only its own decisions, narrows them by symbol,
resumes after an id without gaps or repeats, and a slow client is dropped; browsers connect with
a one-use ticket, other clients with an API-key header."""

import asyncio
import datetime as dt
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from django_tenants.utils import schema_context

from config.asgi import application
from intelligence import feed
from intelligence.consumers import SLOW_CLIENT, DecisionFeedConsumer
from intelligence.models import Decision
from intelligence.selectors import decision_payload

pytestmark = pytest.mark.django_db(transaction=False)


def _payload(i: int, symbol: str = "BTC-USD") -> dict:
    return {"id": i, "symbol": symbol, "timeframe": "1m", "action": "BUY", "confidence": 0.6}


def _publish(schema: str, payloads: list[dict]):
    return sync_to_async(feed.publish_decisions)(payloads, schema)


async def _connect(path: str, **kw) -> WebsocketCommunicator:
    c = WebsocketCommunicator(application, path, **kw)
    connected, code = await c.connect(timeout=5)
    assert connected, code
    return c


def test_each_tenant_hears_only_its_own_decisions_and_can_narrow_them(alpha, beta):
    async def scenario():
        a = await _connect(f"/ws/decisions/?api_key={alpha.key}")
        b = await _connect("/ws/decisions/", headers=[(b"authorization", f"Api-Key {beta.key}".encode())])
        await _publish(alpha.tenant.schema_name, [_payload(1), _payload(2, "ETH-USD")])
        got = [await a.receive_json_from(timeout=5) for _ in range(2)]
        assert [(m["id"], m["type"], m["data"]["symbol"]) for m in got] == [
            (1, "decision", "BTC-USD"),
            (2, "decision", "ETH-USD"),
        ]
        assert await b.receive_nothing(timeout=0.3)
        await a.send_json_to({"action": "subscribe", "symbols": ["eth-usd"]})
        assert (await a.receive_json_from(timeout=5)) == {"type": "subscribed", "symbols": ["ETH-USD"]}
        await _publish(alpha.tenant.schema_name, [_payload(3), _payload(4, "ETH-USD")])
        assert (await a.receive_json_from(timeout=5))["id"] == 4
        assert await a.receive_nothing(timeout=0.3)
        await _publish(beta.tenant.schema_name, [_payload(1)])
        assert (await b.receive_json_from(timeout=5))["id"] == 1
        for c in (a, b):
            await c.disconnect()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def committed_decisions(tenants_ab, django_db_blocker):
    """Three decisions the consumer's own DB thread can see (committed before the test's
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

    async def scenario():
        c = await _connect(f"/ws/decisions/?api_key={alpha.key}&after={first.id}")
        replayed = [await c.receive_json_from(timeout=5) for _ in range(2)]
        assert [m["id"] for m in replayed] == [second.id, third.id]
        assert replayed[0]["data"] == decision_payload(second)
        # a live message for an id already replayed is not sent again; the next one is
        await _publish(alpha.tenant.schema_name, [_payload(third.id), _payload(third.id + 1)])
        assert (await c.receive_json_from(timeout=5))["id"] == third.id + 1
        assert await c.receive_nothing(timeout=0.3)
        await c.disconnect()

    asyncio.run(scenario())


@override_settings(WS_CLIENT_QUEUE=2)
def test_a_client_that_does_not_keep_up_is_dropped(alpha):
    async def never_write(self):
        await asyncio.sleep(3600)

    async def scenario():
        with mock.patch.object(DecisionFeedConsumer, "_write", never_write):
            c = await _connect(f"/ws/decisions/?api_key={alpha.key}")
            await _publish(alpha.tenant.schema_name, [_payload(i) for i in range(1, 6)])
            output = await c.receive_output(timeout=5)
            assert output == {"type": "websocket.close", "code": SLOW_CLIENT}

    asyncio.run(scenario())


def test_browsers_connect_with_a_one_use_ticket(alpha, beta):
    r = alpha.client(role="viewer").post("/api/v1/ws-tickets/")
    assert r.status_code == 201 and r.json()["expires_in"] == 60
    ticket = r.json()["ticket"]

    async def scenario():
        c = await _connect(f"/ws/decisions/?ticket={ticket}")
        await _publish(alpha.tenant.schema_name, [_payload(7)])
        assert (await c.receive_json_from(timeout=5))["id"] == 7
        await c.disconnect()
        again = WebsocketCommunicator(application, f"/ws/decisions/?ticket={ticket}")
        connected, code = await again.connect(timeout=5)
        assert not connected and code == 4401

    asyncio.run(scenario())
    assert alpha.client(scope="read").post("/api/v1/ws-tickets/").status_code == 201
