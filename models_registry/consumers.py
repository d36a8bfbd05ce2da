"""``ws/training/``: progress of the tenant's training jobs as they run (one message per update,
at most about one a second per job). ``{"job": "<id>"}`` narrows the feed to one job."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tenants.channels import group_name


class TrainingProgressConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.group = group_name(self.scope, "training")
        self.only = None
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept(subprotocol=self.scope.get("accepted_subprotocol"))

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and "job" in content:
            self.only = str(content["job"]) if content["job"] else None
            await self.send_json({"subscribed": self.only or "all"})

    async def training_progress(self, event):
        job = event["job"]
        if self.only is None or job["id"] == self.only:
            await self.send_json({"type": "training.progress", "job": job})
