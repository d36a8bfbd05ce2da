from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tenants.channels import group_name


class EchoConsumer(AsyncJsonWebsocketConsumer):
    """``ws/echo/``: every message is broadcast to the sender's tenant only. A wiring check for
    clients and operators, and the proof (tests) that one tenant never hears another."""

    async def connect(self):
        self.group = group_name(self.scope, "echo")
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept(subprotocol=self.scope.get("accepted_subprotocol"))

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        await self.channel_layer.group_send(
            self.group, {"type": "echo.message", "payload": content, "tenant": self.scope["tenant"].slug}
        )

    async def echo_message(self, event):
        await self.send_json({"tenant": event["tenant"], "payload": event["payload"]})
