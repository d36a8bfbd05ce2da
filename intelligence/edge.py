"""``ws/decisions/`` served at the edge: an asyncio process on the ``websockets`` library
(``python manage.py run_feed_edge``; the Procfile's ``edge`` line, port ``WS_FEED_PORT``).

Why not a Channels consumer on daphne: measured on this 2-core machine with 1,000 clients, a
consumer per socket cost ~190 µs of server CPU per socket and decision (p99 4-5x the raw-broadcast
floor); writing one pre-serialised frame straight to each socket's transport costs ~27 µs
(CONVENTIONS §4). daphne keeps the project's other sockets (``ws/training/``, ``ws/echo/``).

Protocol (unchanged from the consumer it replaces):

- Authentication as for every socket of the project (:mod:`tenants.channels`): an
  ``Authorization: Api-Key <key>`` header, the subprotocol ``api-key.<key>``, ``?api_key=``, a JWT
  ``?token=`` or a one-use browser ticket ``?ticket=`` from ``POST /api/v1/ws-tickets/``. Refused
  handshakes get HTTP 401 with what to send.
- A connection receives every decision of its tenant; ``?symbols=A,B`` or the message
  ``{"action": "subscribe", "symbols": [...]}`` narrows them (``[]``: all again), answered by
  ``{"type": "subscribed", "symbols": [...]}``; ``{"action": "ping"}`` gets ``{"type": "pong"}``.
- Messages ``{"cursor", "id", "type": "decision", "data": {...REST decision...}}`` and
  ``{"type": "heartbeat"}`` every ``HEARTBEAT_S``. ``cursor`` is the message's entry id in the
  tenant's resume log (:mod:`intelligence.feed`), in publish (hence commit) order.
- ``?cursor=<the last cursor received>`` resumes exactly: the entries after it are replayed from
  the log, in order, then the socket continues live with no gap and no repeat (the socket is
  subscribed before the handshake completes, what arrives during the replay waits, and a live
  copy of a replayed entry is recognised by its cursor). A cursor that is not an entry id is
  refused with HTTP 400. A cursor older than the log's retention (``FEED_RESUME_RETAIN`` entries,
  ``FEED_RESUME_TTL_S`` idle; or a Redis that lost the log) cannot be resumed exactly: with
  ``&after=<the last id received>`` as well, the socket gets ``{"type": "cursor_expired",
  "after": id}`` and the replay by id below; without it, it is closed with code 4009 and the
  client resyncs with ``GET /api/v1/decisions/?after=<last id>`` then connects anew (no cursor).
- ``?after=<id>`` replays the decisions after that id from PostgreSQL (up to 1,000; then page
  with ``GET /api/v1/decisions/?after=``), without cursors, then continues live. Ids are taken
  before commit, so with several writers for a tenant (two stream partitions, the stream and
  ``POST /api/v1/decisions/``) a lower id can commit after a higher one was sent: resuming by id
  may miss it. Use ``?cursor=`` (and keep ``after`` as its fallback).
- A client that reads slower than decisions arrive, so that more than ``WS_CLIENT_BUFFER`` bytes
  wait in its socket's send buffer, is closed with code 4008; it reconnects with ``?cursor=``.
- When the tenant's live configuration (``prod``, :mod:`configuration`) changes, every socket
  gets ``{"type": "config", "environment": "prod", "version": N, "changed": [setting paths]}``
  (pushed over the channel layer): e.g. ``feed.publish`` false means decisions stop arriving.
- ``GET /health`` answers JSON: sockets and tenants served by this process.
- A tenant holds at most its plan's ``websocket_connections`` sockets across every edge process
  (slots in Redis, refreshed with the heartbeat, freed on close or ``WS_SLOT_TTL_S`` after a
  process died); one more is refused with HTTP 429 saying so.

Fan-out: one Redis pub/sub subscription per process and tenant (:class:`Tenant`), each message's
text serialised once by the publisher (:mod:`intelligence.feed`) and framed straight into the
transports of the sockets that want it (``websockets.broadcast``), without a task or queue per
socket. Sockets are kept in per-symbol sets so that choosing the recipients costs nothing per
non-recipient. Several edge processes may share a port (``SO_REUSEPORT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
import logging
import time
import uuid
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from django.conf import settings
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.protocol import State

from ops import metrics
from ops.logging import log_context
from tenants import limits
from tenants.channels import SUBPROTOCOL_PREFIX, _credentials, _resolve, call_in_tenant

from . import feed

log = logging.getLogger(__name__)

PATH = "/ws/decisions/"
HEARTBEAT_S = 20.0
SLOW_CLIENT = 4008
CURSOR_EXPIRED = 4009
CURSOR_EXPIRED_REASON = "cursor expired: resync with GET /api/v1/decisions/?after=<last id>"
BACKEND_ERROR = 1011
RESUME_LIMIT = 1000  # decisions replayed on ?after=; more are paged over REST
LOG_PAGE = 500  # resume-log entries read per round trip on ?cursor= (all retained ones are replayed)
SKIP_WINDOW_S = 30.0  # how long a resumed socket keeps the replayed ids to drop late duplicates
HEARTBEAT = b'{"type":"heartbeat"}'
UNAUTHENTICATED = (
    "Not authenticated. Send the header 'Authorization: Api-Key <key>', the subprotocol 'api-key.<key>', "
    "?api_key=<key>, or ?ticket=<ticket> from POST /api/v1/ws-tickets/ (one use, within 60 s).\n"
)


class _TrimmedMidway(Exception):
    """The resume log was trimmed past a replay under way (more than the retention published meanwhile)."""


def _symbols(values) -> frozenset[str] | None:
    chosen = frozenset(str(s).strip().upper() for s in values or () if str(s).strip())
    return chosen or None


class Client:
    """One socket: its tenant, symbol filter and resume state."""

    __slots__ = ("ws", "tenant", "schema", "symbols", "after", "cursor", "floor", "early", "skip", "skip_until", "slot")

    def __init__(
        self,
        ws: ServerConnection,
        tenant,
        symbols: frozenset[str] | None,
        after: int | None,
        cursor: tuple[int, int] | None = None,
    ):
        self.ws = ws
        self.tenant = tenant
        self.schema = tenant.schema_name
        self.symbols = symbols
        self.after = after
        self.cursor = cursor  # ?cursor=, parsed
        self.floor: tuple[int, int] | None = None  # after a log replay: live copies up to it were sent
        self.early: list[tuple[str, int, str]] | None = []  # live messages held while resuming
        self.skip: set[int] = set()  # ids sent by the replay: a late live copy is not sent twice
        self.skip_until = 0.0
        self.slot: str | None = None  # the plan's connection slot this socket holds

    def wants(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols


class Tenant:
    """This process's sockets of one tenant, behind one Redis subscription."""

    def __init__(self, hub: Hub, schema: str):
        self.hub = hub
        self.schema = schema
        self.everyone: set[ServerConnection] = set()  # live, no symbol filter
        self.by_symbol: dict[str, set[ServerConnection]] = {}  # live, filtered
        self.special: set[Client] = set()  # resuming, or holding replayed ids for a while
        self.clients: dict[ServerConnection, Client] = {}
        self.ready = asyncio.Event()
        self.reader = asyncio.create_task(self._read())
        self.config_ready = asyncio.Event()
        self.config_task = asyncio.create_task(self._watch_config())

    # -- membership
    def add(self, client: Client) -> None:
        if client.ws not in self.clients:
            metrics.ws_opened("edge")
        self.clients[client.ws] = client
        self.special.add(client)

    def _place(self, client: Client) -> None:
        if client.symbols is None:
            self.everyone.add(client.ws)
        else:
            for s in client.symbols:
                self.by_symbol.setdefault(s, set()).add(client.ws)

    def _unplace(self, client: Client) -> None:
        self.everyone.discard(client.ws)
        for s in client.symbols or ():
            members = self.by_symbol.get(s)
            if members is not None:
                members.discard(client.ws)
                if not members:
                    del self.by_symbol[s]
        self.special.discard(client)

    def remove(self, client: Client) -> None:
        if self.clients.pop(client.ws, None) is not None:
            metrics.ws_closed("edge")
            self._unplace(client)

    def resubscribe(self, client: Client, symbols: frozenset[str] | None) -> None:
        plain = client not in self.special
        self._unplace(client)
        client.symbols = symbols
        if plain:
            self._place(client)
        else:
            self.special.add(client)

    def go_live(self, client: Client, replayed: set[int], floor: tuple[int, int] | None = None) -> None:
        """End the resume: send what arrived meanwhile (minus what the replay sent), synchronously,
        so that no live message can slip in between. ``floor``: the last cursor a log replay sent
        (or the client's own): pub/sub and the log share one order, so exactly the messages with
        a later cursor are new."""
        held, client.early = client.early or [], None
        if floor is not None:
            passed = False
            for symbol, _ident, text in held:
                cursor = feed.cursor_of(text)
                if cursor is None or cursor > floor:
                    passed = passed or cursor is not None
                    if client.wants(symbol):
                        self.hub.send(self, [client.ws], text.encode())
            if passed:  # every later message is later than the floor too
                self._to_fast_path(client)
            else:  # live copies of replayed entries may still be on their way
                client.floor = floor
            return
        for symbol, ident, text in held:
            if ident not in replayed and (client.after is None or ident > client.after) and client.wants(symbol):
                self.hub.send(self, [client.ws], text.encode())
        if replayed:
            client.skip, client.skip_until = replayed, time.monotonic() + SKIP_WINDOW_S
        else:
            self._to_fast_path(client)

    def _to_fast_path(self, client: Client) -> None:
        """From the per-client path (resuming, or dropping replayed ids) to the shared sets."""
        client.skip = set()
        client.floor = None
        self.special.discard(client)
        self._place(client)

    # -- fan-out
    def dispatch(self, symbol: str, ident: int, text: str) -> None:
        data = text.encode()
        targets = list(self.everyone)
        filtered = self.by_symbol.get(symbol)
        if filtered:
            targets.extend(filtered)
        if targets:
            self.hub.send(self, targets, data)
        if self.special:
            now = time.monotonic()
            for client in tuple(self.special):
                if client.early is not None:
                    client.early.append((symbol, ident, text))
                    continue
                if client.floor is not None:
                    cursor = feed.cursor_of(text)
                    if cursor is None or cursor > client.floor:
                        if cursor is not None:  # the first message past the replay: all later ones are too
                            self._to_fast_path(client)
                        if client.wants(symbol):
                            self.hub.send(self, [client.ws], data)
                    continue
                if now > client.skip_until:  # the replay is long past: back to the fast path
                    self._to_fast_path(client)
                    if client.wants(symbol):
                        self.hub.send(self, [client.ws], data)
                elif ident not in client.skip and client.wants(symbol):
                    self.hub.send(self, [client.ws], data)

    def live_sockets(self):
        yield from self.everyone
        for members in self.by_symbol.values():
            yield from members
        for client in self.special:
            if client.early is None:
                yield client.ws

    async def _watch_config(self) -> None:
        """The tenant's configuration changes, over the channel layer (hot reload): a change of
        the live environment is told to its sockets as ``{"type": "config", ...}``."""
        from configuration import reload

        try:
            await reload.listen(self.schema, self._config_changed, ready=self.config_ready)
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - decisions still flow; only the notice is lost
            log.exception("configuration changes of %s not followed", self.schema)

    def _config_changed(self, message: dict) -> None:
        from configuration.schema import LIVE

        if message.get("environment") != LIVE:
            return
        notice = {"type": "config", **{k: message.get(k) for k in ("environment", "version", "changed")}}
        self.hub.send(self, list(self.live_sockets()), json.dumps(notice).encode())

    async def _read(self) -> None:
        client = aioredis.Redis.from_url(self.hub.redis_url)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(feed.channel(self.schema))
            # the server's confirmation: from here on no publish can miss this subscription
            while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "subscribe":
                pass
            self.ready.set()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is not None:
                    self.dispatch(*feed.parse(message["data"]))
        except asyncio.CancelledError:
            pass
        except Exception:  # a Redis outage: close the sockets; clients resume with ?after=
            log.exception("decision feed of %s stopped", self.schema)
            for c in tuple(self.clients.values()):
                self.hub.drop(c, BACKEND_ERROR, "feed interrupted: reconnect with ?cursor=")
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await client.aclose()


class Hub:
    """Everything one edge process serves."""

    def __init__(self, *, redis_url: str | None = None, buffer_limit: int | None = None):
        if redis_url is None:
            from config.settings.services import REDIS_DB_CHANNELS, redis_db_url

            redis_url = redis_db_url(REDIS_DB_CHANNELS)
        self.redis_url = redis_url
        self.buffer_limit = buffer_limit if buffer_limit is not None else settings.WS_CLIENT_BUFFER
        self.tenants: dict[str, Tenant] = {}
        self.dropped = 0
        self.refused = 0
        self._conn_ids = itertools.count(1)
        self._process = uuid.uuid4().hex[:12]

    async def join(self, client: Client) -> None:
        group = self.tenants.get(client.schema)
        if group is None:
            group = self.tenants[client.schema] = Tenant(self, client.schema)
        group.add(client)
        await asyncio.wait_for(group.ready.wait(), timeout=5)
        with contextlib.suppress(TimeoutError):  # the configuration notices are a courtesy: never wait long
            await asyncio.wait_for(group.config_ready.wait(), timeout=2)

    def leave(self, client: Client) -> None:
        if client.slot is not None:  # the plan's connection slot, freed once
            slot, client.slot = client.slot, None
            asyncio.get_running_loop().run_in_executor(None, limits.ws_slot_release, client.schema, slot)
        group = self.tenants.get(client.schema)
        if group is None:
            return
        group.remove(client)
        if not group.clients:
            del self.tenants[client.schema]
            group.reader.cancel()
            group.config_task.cancel()

    def send(self, group: Tenant, sockets: list[ServerConnection], data: bytes) -> None:
        """Frame ``data`` into each socket's transport; a socket whose unsent bytes exceed the
        limit is closed as too slow instead."""
        limit = self.buffer_limit
        slow = [ws for ws in sockets if ws.transport.get_write_buffer_size() > limit]
        if slow:
            for ws in slow:
                client = group.clients.get(ws)
                if client is not None:
                    self.drop(client, SLOW_CLIENT, "too slow: reconnect with ?cursor=<last cursor>")
            gone = set(slow)
            sockets = [ws for ws in sockets if ws not in gone]
        broadcast(sockets, data, text=True)

    def drop(self, client: Client, code: int, reason: str) -> None:
        self.leave(client)
        self.dropped += 1
        asyncio.ensure_future(client.ws.close(code, reason))

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            for group in tuple(self.tenants.values()):
                for client in [c for c in group.clients.values() if c.ws.state is State.CLOSED]:
                    self.leave(client)  # a handshake that never reached the handler
                self.send(group, list(group.live_sockets()), HEARTBEAT)
                slots = [c.slot for c in group.clients.values() if c.slot is not None]
                with contextlib.suppress(Exception):  # Redis away: slots expire, refreshed next beat
                    await asyncio.to_thread(limits.ws_slots_refresh, group.schema, slots)

    def stats(self) -> dict:
        return {
            "sockets": sum(len(g.clients) for g in self.tenants.values()),
            "tenants": len(self.tenants),
            "dropped_slow_or_failed": self.dropped,
            "refused_over_plan": self.refused,
        }

    # -- the websockets server's hooks
    async def process_request(self, ws: ServerConnection, request):
        path, _, query = request.path.partition("?")
        if path == "/health":
            response = ws.respond(http.HTTPStatus.OK, json.dumps({"status": "ok", **self.stats()}) + "\n")
            response.headers["Content-Type"] = "application/json"
            return response
        if path.rstrip("/") != PATH.rstrip("/"):
            return ws.respond(http.HTTPStatus.NOT_FOUND, f"Not found: this server serves {PATH} and /health.\n")
        params = parse_qs(query)
        raw_cursor = (params.get("cursor") or [""])[0]
        cursor = feed.parse_cursor(raw_cursor) if raw_cursor else None
        if raw_cursor and cursor is None:
            return ws.respond(
                http.HTTPStatus.BAD_REQUEST,
                "invalid_cursor: ?cursor= takes the 'cursor' of the last decision received, e.g. 1712345678901-0.\n",
            )
        scope = {
            "query_string": query.encode(),
            "subprotocols": [
                p.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",")
            ],
            "headers": [(b"authorization", v.encode()) for v in request.headers.get_all("Authorization")],
        }
        api_key, jwt, ticket, _ = _credentials(scope)
        slot = f"{self._process}-{next(self._conn_ids)}"
        resolved, usage = await asyncio.to_thread(_resolve_and_take_slot, api_key, jwt, ticket, slot)
        if resolved is None:
            return ws.respond(http.HTTPStatus.UNAUTHORIZED, UNAUTHENTICATED)
        if usage is None:
            self.refused += 1
            metrics.limit_rejected("websocket_connections", resolved[0])
            cap = limits.plan_limit(resolved[0], "websocket_connections")
            response = ws.respond(
                http.HTTPStatus.TOO_MANY_REQUESTS,
                f"websocket_connections_exceeded: plan '{resolved[0].plan.code}' allows {cap} open connection(s) "
                "to the feed; close one (or share one socket with ?symbols=) or upgrade the plan.\n",
            )
            response.headers["Retry-After"] = "30"
            return response
        after = (params.get("after") or [""])[0]
        symbols = _symbols((params.get("symbols") or [""])[0].split(","))
        client = Client(ws, resolved[0], symbols, int(after) if after.isdigit() else None, cursor)
        client.slot = slot
        ws.feed_client = client
        # subscribed before the handshake completes: nothing published after the client sees
        # the connection open is missed
        await self.join(client)
        return None

    def process_response(self, ws: ServerConnection, request, response):
        client = getattr(ws, "feed_client", None)
        if client is not None and response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            self.leave(client)
        return None

    @staticmethod
    def select_subprotocol(ws: ServerConnection, offered) -> str | None:
        return next((p for p in offered if p.startswith(SUBPROTOCOL_PREFIX)), None)

    async def handler(self, ws: ServerConnection) -> None:
        client: Client = ws.feed_client
        with log_context(tenant=client.schema, connection_id=client.slot):  # on this socket's log records
            await self._serve_client(ws, client)

    async def _serve_client(self, ws: ServerConnection, client: Client) -> None:
        try:
            replayed: set[int] = set()
            floor = None
            if client.cursor is not None:
                try:
                    floor = await self._replay_log(ws, client)
                except _TrimmedMidway:
                    await ws.close(CURSOR_EXPIRED, CURSOR_EXPIRED_REASON)
                    return
                if floor is None:  # older than the log's retention
                    if client.after is None:
                        await ws.close(CURSOR_EXPIRED, CURSOR_EXPIRED_REASON)
                        return
                    await ws.send(json.dumps({"type": "cursor_expired", "after": client.after}))
            if floor is None and client.after is not None:
                backlog = await asyncio.to_thread(_backlog, client.tenant, client.after, client.symbols)
                for payload in backlog:
                    await ws.send(feed.message_text(payload))
                    replayed.add(payload["id"])
            group = self.tenants.get(client.schema)
            if group is None or ws not in group.clients:  # dropped meanwhile
                return
            group.go_live(client, replayed, floor)
            async for raw in ws:
                await self._command(client, raw)
        finally:
            self.leave(client)

    async def _replay_log(self, ws: ServerConnection, client: Client) -> tuple[int, int] | None:
        """Send the resume log's entries after ``client.cursor`` (those of its symbols); return the
        last cursor sent (the client's own when none), or None when entries after the cursor may
        have been trimmed away (the log's oldest entry is later than the position read from)."""
        key = feed.log_key(client.schema)
        position = client.cursor
        async with aioredis.Redis.from_url(self.redis_url) as r:
            while True:
                async with r.pipeline(transaction=True) as pipe:  # the head check and the page, atomically
                    pipe.xrange(key, "-", "+", count=1)
                    pipe.xrange(key, f"{position[0]}-{position[1] + 1}", "+", count=LOG_PAGE)
                    head, page = await pipe.execute()
                if not head or feed.parse_cursor(head[0][0].decode()) > position:
                    if position != client.cursor:  # trimmed under a long replay: the client resumes anew
                        raise _TrimmedMidway
                    return None
                for entry_id, fields in page:
                    eid = entry_id.decode()
                    if client.wants(fields[b"s"].decode()):
                        await ws.send(feed.with_cursor(fields[b"m"].decode(), eid))
                    position = feed.parse_cursor(eid)
                if len(page) < LOG_PAGE:
                    return position

    async def _command(self, client: Client, raw) -> None:
        try:
            message = json.loads(raw)
            action = message.get("action") if isinstance(message, dict) else None
        except ValueError:
            return await client.ws.send('{"type":"error","error":"not JSON"}')
        if action == "subscribe":
            symbols = message.get("symbols")
            if symbols is not None and not isinstance(symbols, list):
                return await client.ws.send('{"type":"error","error":"symbols must be a list"}')
            group = self.tenants.get(client.schema)
            if group is not None:
                group.resubscribe(client, _symbols(symbols))
            chosen = sorted(client.symbols or ())
            await client.ws.send(json.dumps({"type": "subscribed", "symbols": chosen}))
        elif action == "ping":
            await client.ws.send('{"type":"pong"}')
        else:
            await client.ws.send('{"type":"error","error":"unknown action: send subscribe or ping"}')

    def serve(self, host: str, port: int, **kw):
        """The server (an async context manager; ``port=0`` picks a free one)."""
        return serve(
            self.handler,
            host,
            port,
            process_request=self.process_request,
            process_response=self.process_response,
            select_subprotocol=self.select_subprotocol,
            compression=None,  # the payload is framed once per socket; deflate would cost per socket
            ping_interval=None,  # the JSON heartbeat does the job
            max_size=64 * 1024,  # clients only send small commands
            backlog=2048,
            reuse_port=True,
            **kw,
        )


def _resolve_and_take_slot(api_key, jwt, ticket, slot: str):
    """(the resolved credentials, the plan's connection slot taken — None when all are in use)."""
    resolved = _resolve(api_key, jwt, ticket)
    if resolved is None:
        return None, None
    try:
        return resolved, limits.ws_slot_acquire(resolved[0], slot)
    except Exception as exc:  # noqa: BLE001 - counters unreachable: serve rather than refuse
        log.warning("feed edge: connection slots unavailable (%s); admitting without a slot", exc)
        return resolved, limits.Usage("websocket_connections", 0, None)


def _backlog(tenant, after: int, symbols) -> list[dict]:
    from .selectors import decisions_after

    return call_in_tenant(
        tenant, decisions_after, after=after, symbols=set(symbols) if symbols else None, limit=RESUME_LIMIT
    )


async def run(host: str, port: int, ready=None) -> None:
    """Serve until cancelled; ``ready(port)`` is called once listening."""
    hub = Hub()
    beat = asyncio.create_task(hub.heartbeat())
    try:
        async with hub.serve(host, port) as server:
            if ready is not None:
                ready(server.sockets[0].getsockname()[1])
            await server.serve_forever()
    finally:
        beat.cancel()
