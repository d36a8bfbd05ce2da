"""WebSockets resolve their tenant from the key; tenant A never receives tenant B's messages."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=False)


def _connect(path, subprotocols=None):
    return WebsocketCommunicator(application, path, subprotocols=subprotocols)


def test_messages_reach_own_tenant_only(alpha, beta):
    async def scenario():
        a1 = _connect(f"/ws/echo/?api_key={alpha.key}")
        a2 = _connect("/ws/echo/", subprotocols=[f"api-key.{alpha.scoped_keys['read']}"])
        b1 = _connect(f"/ws/echo/?api_key={beta.key}")
        for c in (a1, a2, b1):
            connected, _ = await c.connect(timeout=5)
            assert connected
        await asyncio.sleep(0.2)  # let pub/sub subscriptions settle
        await a1.send_json_to({"msg": "alpha-secret"})
        got = await a2.receive_json_from(timeout=5)
        assert got == {"tenant": "alpha", "payload": {"msg": "alpha-secret"}}
        assert await b1.receive_nothing(timeout=0.5)
        await b1.send_json_to({"msg": "beta-secret"})
        assert (await b1.receive_json_from(timeout=5))["tenant"] == "beta"
        assert await a2.receive_nothing(timeout=0.5)
        for c in (a1, a2, b1):
            await c.disconnect()

    asyncio.run(scenario())


@pytest.mark.parametrize("path", ["/ws/echo/", "/ws/echo/?api_key=ati_000000000000_bad", "/ws/echo/?token=x.y.z"])
def test_unauthenticated_handshake_is_refused(alpha, path):
    async def scenario():
        c = _connect(path)
        connected, code = await c.connect(timeout=5)
        assert not connected and code == 4401

    asyncio.run(scenario())


def test_jwt_of_a_member_connects(alpha):
    async def scenario():
        c = _connect(f"/ws/echo/?token={alpha.jwt('viewer')}")
        connected, _ = await c.connect(timeout=5)
        assert connected
        await c.disconnect()

    asyncio.run(scenario())
