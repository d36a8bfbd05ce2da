"""``ws/notifications/``: a member's notification centre over WebSocket. It tells the unread count on
connect and forwards each in-app notification delivered to that member while it is open; nobody
else hears it (another member, another tenant), and sockets without a member are refused.

The consumer reads the database from Channels' worker thread, which cannot see the test's own
(rolled-back) transaction: the rows these tests need are written from that thread too, committed,
and removed at the end."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from django_tenants.utils import schema_context
from rest_framework_simplejwt.tokens import RefreshToken

from config.asgi import application
from notifications.models import Channel, Delivery, Event, InAppNotification
from tenants.channels import ws_ticket_issue
from tenants.models import Role

pytestmark = pytest.mark.django_db

PATH = "/ws/notifications/"


def _ticket(fx, role: str) -> str:
    return ws_ticket_issue(tenant_id=fx.tenant.pk, user_id=fx.users[role].pk, key_id=None)


def _inapp_delivery(fx, user, **data) -> int:
    """An in-app delivery for ``user`` waiting to be sent (committed: called in a worker thread)."""
    with schema_context(fx.tenant.schema_name):
        event = Event.objects.create(
            type="model.deployed", data={"name": "churn", "version": 3, **data}, fanned_out_at=timezone.now()
        )
        target = f"inapp:{user.pk}"
        d = Delivery.objects.create(
            event=event, channel=Channel.INAPP, target=target, idempotency_key=f"{event.pk}:{target}"
        )
        return d.pk


def _seed_inbox(fx, user, unread: int, read: int) -> None:
    from notifications.delivery import deliver

    ids = [_inapp_delivery(fx, user, version=i) for i in range(unread + read)]
    with schema_context(fx.tenant.schema_name):
        for pk in ids:
            deliver(pk)
        for note in InAppNotification.objects.filter(user_id=user.pk).order_by("id")[:read]:
            note.read_at = timezone.now()
            note.save(update_fields=["read_at"])


def _deliver(fx, user) -> int:
    from notifications.delivery import deliver

    pk = _inapp_delivery(fx, user, name="fraud")
    with schema_context(fx.tenant.schema_name):
        assert deliver(pk) == "sent"
        return InAppNotification.objects.get(delivery_id=pk).pk


def _clean(*fixtures) -> None:
    for fx in fixtures:
        with schema_context(fx.tenant.schema_name):
            # deliveries and in-app notifications go with their events
            Event.objects.filter(type="model.deployed", data__name__in=["churn", "fraud"]).delete()


def test_a_member_sees_the_unread_count_then_a_delivered_notification_live(alpha, beta):
    viewer = alpha.users[Role.VIEWER]

    async def scenario():
        await sync_to_async(_seed_inbox)(alpha, viewer, unread=2, read=1)
        mine = WebsocketCommunicator(application, f"{PATH}?ticket={_ticket(alpha, Role.VIEWER)}")
        colleague = WebsocketCommunicator(application, f"{PATH}?ticket={_ticket(alpha, Role.ADMIN)}")
        stranger = WebsocketCommunicator(application, f"{PATH}?ticket={_ticket(beta, Role.VIEWER)}")
        for c in (mine, colleague, stranger):
            connected, _ = await c.connect(timeout=5)
            assert connected
        # when connected: each hears its own unread count first
        assert await mine.receive_json_from(timeout=5) == {"type": "unread", "count": 2}
        assert await colleague.receive_json_from(timeout=5) == {"type": "unread", "count": 0}
        assert await stranger.receive_json_from(timeout=5) == {"type": "unread", "count": 0}
        await asyncio.sleep(0.2)  # let the pub/sub subscriptions settle
        # when the engine delivers an in-app notification to the viewer
        note_id = await sync_to_async(_deliver)(alpha, viewer)
        got = await mine.receive_json_from(timeout=5)
        assert got["type"] == "notification"
        assert got["notification"]["id"] == note_id
        assert got["notification"]["title"] == "Model fraud v3 deployed"
        assert got["notification"]["read"] is False and got["notification"]["severity"] == "info"
        # then nobody else hears it: not a colleague, not another tenant's member
        assert await colleague.receive_nothing(timeout=0.5)
        assert await stranger.receive_nothing(timeout=0.5)
        # the socket answers a keep-alive ping
        await mine.send_json_to({"type": "ping"})
        assert await mine.receive_json_from(timeout=5) == {"type": "pong"}
        for c in (mine, colleague, stranger):
            await c.disconnect()
        # a new connection counts the new one too
        again = WebsocketCommunicator(application, f"{PATH}?ticket={_ticket(alpha, Role.VIEWER)}")
        assert (await again.connect(timeout=5))[0]
        assert await again.receive_json_from(timeout=5) == {"type": "unread", "count": 3}
        await again.disconnect()

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(sync_to_async(_clean)(alpha, beta))


def test_a_members_jwt_connects(alpha):
    async def scenario():
        c = WebsocketCommunicator(application, f"{PATH}?token={alpha.jwt(Role.ANALYST)}")
        connected, _ = await c.connect(timeout=5)
        assert connected
        assert (await c.receive_json_from(timeout=5))["type"] == "unread"
        await c.disconnect()

    asyncio.run(scenario())


def _beta_user_token_for_alpha(alpha, beta) -> str:
    access = RefreshToken.for_user(beta.users[Role.OWNER]).access_token
    access["tenant_id"] = alpha.tenant.pk
    return str(access)


@pytest.mark.parametrize("how", ["anonymous", "bad ticket", "ticket for another tenant", "token for another tenant"])
def test_anonymous_and_other_tenants_are_refused(alpha, beta, how):
    # a ticket naming alpha for beta's member: the handshake checks the membership
    foreign = ws_ticket_issue(tenant_id=alpha.tenant.pk, user_id=beta.users[Role.OWNER].pk, key_id=None)
    query = {
        "anonymous": "",
        "bad ticket": "?ticket=not-a-ticket",
        "ticket for another tenant": f"?ticket={foreign}",
        "token for another tenant": f"?token={_beta_user_token_for_alpha(alpha, beta)}",
    }[how]

    async def scenario():
        c = WebsocketCommunicator(application, PATH + query)
        connected, code = await c.connect(timeout=5)
        assert not connected and code == 4401

    asyncio.run(scenario())


def test_an_api_key_has_no_notification_centre(alpha):
    async def scenario():
        c = WebsocketCommunicator(application, f"{PATH}?api_key={alpha.key}")
        connected, code = await c.connect(timeout=5)
        assert not connected and code == 4403

    asyncio.run(scenario())


def test_a_ticket_is_used_once(alpha):
    ticket = _ticket(alpha, Role.VIEWER)

    async def scenario():
        first = WebsocketCommunicator(application, f"{PATH}?ticket={ticket}")
        assert (await first.connect(timeout=5))[0]
        await first.disconnect()
        second = WebsocketCommunicator(application, f"{PATH}?ticket={ticket}")
        connected, code = await second.connect(timeout=5)
        assert not connected and code == 4401

    asyncio.run(scenario())
