"""Tenant context for WebSockets (django-tenants covers only HTTP).

:class:`TenantWebSocketMiddleware` resolves the tenant from the API key (``?api_key=``, the
``Sec-WebSocket-Protocol`` value ``api-key.<key>`` or an ``Authorization: Api-Key`` header), a JWT
(``?token=``) or a one-use ticket from ``POST /api/v1/ws-tickets/`` (``?ticket=``) and puts ``tenant``,
``schema_name`` and ``api_key`` in the scope; unauthenticated handshakes are refused (HTTP 403).
Consumers touch the database only through :func:`tenant_db`, which runs the call inside
``tenant_context`` in the worker thread — threads from ``sync_to_async`` otherwise run on
whatever schema their connection last had. Group names start with the schema.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.db import close_old_connections, connection
from django_tenants.utils import tenant_context
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from ops.logging import log_context, new_request_id

from . import resolution
from .models import Membership

SUBPROTOCOL_PREFIX = "api-key."


TICKET_TTL = 60  # seconds a ws-ticket may wait before it is used (once)


def _credentials(scope) -> tuple[str | None, str | None, str | None, str | None]:
    """(api_key, jwt, ticket, subprotocol_to_echo)"""
    query = parse_qs(scope.get("query_string", b"").decode())
    for proto in scope.get("subprotocols") or []:
        if proto.startswith(SUBPROTOCOL_PREFIX):
            return proto[len(SUBPROTOCOL_PREFIX) :], None, None, proto
    for name, value in scope.get("headers") or []:
        if name == b"authorization" and value[:8].lower() == b"api-key ":
            return value[8:].decode().strip(), None, None, None
    first = lambda k: (query.get(k) or [None])[0]  # noqa: E731
    return first("api_key"), first("token"), first("ticket"), None


def ws_ticket_issue(*, tenant_id: int, user_id: int | None, key_id: int | None) -> str:
    """A one-use ticket for a browser's WebSocket handshake (browsers can't send headers)."""
    import secrets

    ticket = secrets.token_urlsafe(24)
    payload = json.dumps({"tenant_id": tenant_id, "user_id": user_id, "key_id": key_id})
    resolution.redis_client().set(f"wsticket:{ticket}", payload, ex=TICKET_TTL)
    return ticket


def _ticket(ticket: str):
    raw = resolution.redis_client().getdel(f"wsticket:{ticket}")  # one use
    if raw is None:
        return None
    data = json.loads(raw)
    tenant = resolution.tenant_by_id(int(data["tenant_id"]))
    if tenant is None:
        return None
    if data.get("user_id") and not Membership.objects.filter(user_id=data["user_id"], tenant=tenant).exists():
        return None
    return tenant, None, data.get("user_id")


def _resolve(api_key: str | None, jwt: str | None, ticket: str | None = None):
    close_old_connections()
    connection.set_schema_to_public()
    if ticket:
        return _ticket(ticket)
    if api_key:
        key = resolution.api_key_resolve(api_key)
        tenant = resolution.tenant_by_id(key.tenant_id) if key else None
        return (tenant, key, None) if tenant else None
    if jwt:
        try:
            token = AccessToken(jwt)
        except TokenError:
            return None
        tenant_id, user_id = token.get("tenant_id"), token.get("user_id")
        if not tenant_id or not Membership.objects.filter(user_id=user_id, tenant_id=tenant_id).exists():
            return None
        tenant = resolution.tenant_by_id(int(tenant_id))
        return (tenant, None, user_id) if tenant else None
    return None


class TenantWebSocketMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        api_key, jwt, ticket, subprotocol = _credentials(scope)
        resolved = await database_sync_to_async(_resolve)(api_key, jwt, ticket)
        if resolved is None:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 4401})
            return None
        tenant, key, user_id = resolved
        scope = dict(
            scope,
            tenant=tenant,
            schema_name=tenant.schema_name,
            api_key=key,
            user_id=user_id,
            accepted_subprotocol=subprotocol,
        )
        actor = f"apikey:{key.prefix}" if key is not None else f"user:{user_id}" if user_id else None
        # every record of this connection (its consumer, and threads it starts) names it
        with log_context(request_id=new_request_id(), tenant=tenant.schema_name, user=actor):
            return await self.app(scope, receive, send)


def call_in_tenant(tenant, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` against ``tenant``'s schema, from a worker thread (its connection
    may be stale and may carry another schema: neither survives this)."""
    close_old_connections()
    with tenant_context(tenant):
        return fn(*args, **kwargs)


async def tenant_db(scope, fn, *args, **kwargs):
    """Run ``fn`` against the scope's tenant schema in Channels' DB thread pool."""
    return await database_sync_to_async(call_in_tenant)(scope["tenant"], fn, *args, **kwargs)


def group_name(scope, *parts: str) -> str:
    return ".".join([scope["schema_name"], *parts])
