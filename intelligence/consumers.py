"""``ws/decisions/``: the tenant's live decisions.

A connection receives every decision of its tenant until it sends
``{"action": "subscribe", "symbols": [...]}`` (``[]`` or ``null``: all again). ``?after=<id>`` on
connect first replays the decisions after that id, then continues live without gaps or repeats.
Messages: ``{"id", "type": "decision", "data": {...}}``, ``{"type": "heartbeat"}`` every
``HEARTBEAT_S``, ``{"type": "subscribed", "symbols": [...]}``.

Fan-out happens here, at the edge: one Redis subscription per process and tenant (the
:class:`_Hub`), the payload text serialised once by the publisher and written to each local
socket through its own bounded queue. A client whose queue fills up (it reads slower than
decisions arrive) is disconnected with close code 4008; it can reconnect with ``?after=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from tenants.channels import tenant_db

from . import feed

log = logging.getLogger(__name__)

HEARTBEAT_S = 20
SLOW_CLIENT = 4008


class _Hub:
    """Per process: one pub/sub subscription per tenant with local sockets, shared by them all."""

    def __init__(self):
        self.members: dict[str, set[DecisionFeedConsumer]] = {}
        self.readers: dict[str, asyncio.Task] = {}

    async def join(self, schema: str, consumer: DecisionFeedConsumer) -> None:
        members = self.members.setdefault(schema, set())
        members.add(consumer)
        if schema not in self.readers:
            ready = asyncio.Event()
            self.readers[schema] = asyncio.create_task(self._read(schema, ready))
            await asyncio.wait_for(ready.wait(), timeout=5)

    def leave(self, schema: str, consumer: DecisionFeedConsumer) -> None:
        members = self.members.get(schema)
        if members is None:
            return
        members.discard(consumer)
        if not members:
            del self.members[schema]
            task = self.readers.pop(schema, None)
            if task is not None:
                task.cancel()

    async def _read(self, schema: str, ready: asyncio.Event) -> None:
        from config.settings.services import REDIS_DB_CHANNELS, redis_db_url

        client = aioredis.Redis.from_url(redis_db_url(REDIS_DB_CHANNELS))  # one connection per subscription
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(feed.channel(schema))
            # the server's confirmation: from here on no publish can miss this subscription
            while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "subscribe":
                pass
            ready.set()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                symbol, ident, text = feed.parse(message["data"])
                for consumer in tuple(self.members.get(schema, ())):
                    consumer.offer(symbol, ident, text)
        except asyncio.CancelledError:
            pass
        except Exception:  # a Redis outage: the sockets are closed and clients resume with ?after=
            log.exception("decision feed of %s stopped", schema)
            for consumer in tuple(self.members.get(schema, ())):
                consumer.drop(1011)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await client.aclose()


hub = _Hub()


class DecisionFeedConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.schema = self.scope["schema_name"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.symbols = {s.upper() for s in (query.get("symbols") or [""])[0].split(",") if s} or None
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.WS_CLIENT_QUEUE)
        self.last_id = 0
        self.resuming = True
        self.early: list[tuple[int, str]] = []
        # subscribed before the handshake completes: nothing published after the client sees the
        # connection open is missed, and whatever arrives during the replay waits in ``early``
        await hub.join(self.schema, self)
        await self.accept(subprotocol=self.scope.get("accepted_subprotocol"))
        self.writer = asyncio.create_task(self._write())
        self.beat = asyncio.create_task(self._heartbeat())
        after = (query.get("after") or [None])[0]
        if after is not None and after.isdigit():
            from .selectors import decisions_after

            backlog = await tenant_db(self.scope, decisions_after, after=int(after), symbols=self.symbols)
            for payload in backlog:
                self._enqueue(payload["id"], feed.message_text(payload))
            self.last_id = max(self.last_id, int(after))
        self.resuming = False
        for ident, text in self.early:
            self._enqueue(ident, text)
        self.early = []

    async def disconnect(self, code):
        hub.leave(self.schema, self)
        for task in (getattr(self, "writer", None), getattr(self, "beat", None)):
            if task is not None:
                task.cancel()

    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = json.loads(text_data or "{}")
        except ValueError:
            return await self.send(text_data=json.dumps({"type": "error", "error": "not JSON"}))
        if message.get("action") == "subscribe":
            symbols = message.get("symbols") or []
            self.symbols = {str(s).upper() for s in symbols} or None
            await self.send(text_data=json.dumps({"type": "subscribed", "symbols": sorted(self.symbols or [])}))
        elif message.get("action") == "ping":
            await self.send(text_data=json.dumps({"type": "pong"}))

    # called by the hub, in this process's event loop
    def offer(self, symbol: str, ident: int, text: str) -> None:
        if self.symbols is not None and symbol not in self.symbols:
            return
        if self.resuming:
            self.early.append((ident, text))
            return
        self._enqueue(ident, text)

    def _enqueue(self, ident: int, text: str) -> None:
        if ident <= self.last_id:  # already sent (replay and live overlap)
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.drop(SLOW_CLIENT)
            return
        self.last_id = ident

    def drop(self, code: int) -> None:
        hub.leave(self.schema, self)
        asyncio.ensure_future(self.close(code=code))

    async def _write(self):
        while True:
            text = await self.queue.get()
            await self.send(text_data=text)

    async def _heartbeat(self):
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self.send(text_data='{"type":"heartbeat"}')
