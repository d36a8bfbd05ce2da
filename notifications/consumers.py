"""``ws/notifications/``: a member's in-app notification centre, live. On connect the socket says
how many notifications are unread (``{"type": "unread", "count": n}``); each one delivered to the
member afterwards arrives as ``{"type": "notification", "notification": {...}}``.

The handshake is authenticated by :class:`tenants.channels.TenantWebSocketMiddleware` (a one-use
ticket the dashboard issues from the session, or a member's JWT); the centre belongs to a person,
so an API key (no member) is refused with 4403, as is a ticket or token of someone who is no longer
a member of the tenant. The rows are the record: a push missed while the socket was down is seen
on the next page load (the count comes from the database on every connect)."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tenants.channels import tenant_db

from .channels import inapp_group

CLOSE_NOT_A_MEMBER = 4403


def _member_unread(tenant, user_id: int) -> int | None:
    """The member's unread count, or None when ``user_id`` is no active member of ``tenant``."""
    from tenants.models import Membership

    from .selectors import unread_count

    if not Membership.objects.filter(tenant=tenant, user_id=user_id, user__is_active=True).exists():
        return None
    return unread_count(user_id=user_id)


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self):
        user_id = self.scope.get("user_id")
        if not user_id:
            await self.close(code=CLOSE_NOT_A_MEMBER)
            return
        count = await tenant_db(self.scope, _member_unread, self.scope["tenant"], int(user_id))
        if count is None:
            await self.close(code=CLOSE_NOT_A_MEMBER)
            return
        self.group = inapp_group(self.scope["schema_name"], int(user_id))
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept(subprotocol=self.scope.get("accepted_subprotocol"))
        await self.send_json({"type": "unread", "count": count})

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """The socket only listens; a client's ``{"type": "ping"}`` gets a pong (keep-alive checks)."""
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def notification_new(self, event):
        await self.send_json({"type": "notification", "notification": event["notification"]})
