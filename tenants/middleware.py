"""Resolve the tenant of every HTTP request, then point the DB connection at its schema.

Order: (1) ``Authorization: Api-Key <key>``, (2) ``Authorization: Bearer <JWT>`` with a ``tenant``
claim, (3) the host (``acme.localhost``), (4) the session's active tenant on the main host.
The schema is set explicitly on every request (public when no tenant), so a reused connection
never carries another request's tenant. Without a tenant only the public URLconf is routed:
a tenant URL is a 404, never served from the public schema.
"""

import logging
import time

import redis
from django.conf import settings
from django.db import connection
from django.urls import Resolver404, resolve
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from api.errors import error_response

from . import metering, ratelimit, resolution

log = logging.getLogger(__name__)

SESSION_TENANT_KEY = "active_tenant_id"
# served without a tenant, whatever the host or credentials: /metrics takes a scraper's bearer
# token (METRICS_TOKEN), which is not a JWT (ops/metrics.py)
PUBLIC_ONLY_PATHS = frozenset({"/metrics"})


class TenantResolutionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        connection.set_schema_to_public()
        request.tenant = None
        request.api_key = None
        request.jwt_token = None
        if request.path_info in PUBLIC_ONLY_PATHS:
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            return self.get_response(request)
        try:
            tenant_or_response = self._resolve(request)
            if not hasattr(tenant_or_response, "schema_name"):
                if tenant_or_response is not None:
                    return tenant_or_response  # an error response
                request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            else:
                request.tenant = tenant_or_response
                connection.set_tenant(tenant_or_response)
                request.urlconf = settings.ROOT_URLCONF
            return self.get_response(request)
        finally:
            connection.set_schema_to_public()

    def _resolve(self, request):
        host_tenant = resolution.tenant_by_host(request.get_host())
        auth = request.headers.get("Authorization", "")
        scheme, _, credential = auth.partition(" ")
        scheme = scheme.lower()
        if scheme == "api-key":
            key = resolution.api_key_resolve(credential.strip())
            if key is None:
                return error_response(
                    "invalid_api_key",
                    "Unknown or revoked API key. Create one in the "
                    "dashboard (API keys) or ask an admin of your tenant.",
                    401,
                )
            tenant = resolution.tenant_by_id(key.tenant_id)
            if tenant is None:
                return error_response("tenant_inactive", "This key's tenant is suspended or deleted.", 401)
            if host_tenant is not None and host_tenant.pk != tenant.pk:
                return error_response("not_found", "Not found.", 404)
            request.api_key = key
            return tenant
        if scheme == "bearer":
            try:
                token = AccessToken(credential.strip())
            except TokenError:
                return error_response(
                    "invalid_token",
                    "The bearer token is malformed or expired; obtain a new one from /api/v1/auth/token/.",
                    401,
                )
            request.jwt_token = token
            tenant_id = token.get("tenant_id")
            if tenant_id is None:
                return host_tenant
            tenant = resolution.tenant_by_id(int(tenant_id))
            if tenant is None or (host_tenant is not None and host_tenant.pk != tenant.pk):
                return error_response("not_found", "Not found.", 404)
            return tenant
        if host_tenant is not None:
            return host_tenant
        session = getattr(request, "session", None)
        if session is not None and session.session_key is not None:
            tenant_id = session.get(SESSION_TENANT_KEY)
            if tenant_id:
                return resolution.tenant_by_id(int(tenant_id))
        return None


class UsageMiddleware:
    """API requests of a tenant: rate limits first (429 with ``Retry-After`` when a bucket is
    empty), ``X-RateLimit-*`` headers on every response, then the request metered (endpoint,
    status, latency, key, user, and the units it produced) in one Redis round trip.

    Redis unreachable: requests are served unlimited and unmetered (logged) rather than refused —
    an outage of the counters must not become an outage of the API."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        tenant = getattr(request, "tenant", None)
        if tenant is None or not request.path_info.startswith("/api/"):
            return self.get_response(request)
        started = time.perf_counter()
        key_id = request.api_key.id if request.api_key is not None else None
        user_id = None
        if request.jwt_token is not None:
            user_id = request.jwt_token.get("user_id")
        elif key_id is None and request.user.is_authenticated:
            user_id = request.user.pk
        try:
            decision = ratelimit.rate_check(tenant, key_id=key_id, user_id=user_id)
        except redis.RedisError as exc:
            _redis_down(exc)
            decision = None
        units: list = []
        if decision is not None and not decision.allowed:
            from ops import metrics

            metrics.limit_rejected(f"requests_{decision.scope}", tenant)
            who = {"tenant": "for your tenant", "key": "for this API key", "user": "for your user"}[decision.scope]
            response = error_response(
                "rate_limited",
                f"Too many requests: {decision.limit} per minute {who} on plan '{tenant.plan.code}'. Retry in "
                f"{decision.retry_after_s} s, spread requests out, or upgrade the plan.",
                429,
                {"scope": decision.scope, "limit": decision.limit, "retry_after_seconds": decision.retry_after_s},
            )
        else:
            meter = metering.request_begin()
            try:
                response = self.get_response(request)
            finally:
                metering.request_end()
            units = meter.units
        if decision is not None:
            for name, value in decision.headers().items():
                response[name] = value
        match = getattr(request, "resolver_match", None)
        if match is None and response.status_code == 429:  # refused before routing: name it anyway
            try:
                match = resolve(request.path_info, urlconf=getattr(request, "urlconf", None))
            except Resolver404:
                match = None
        endpoint = (match.view_name if match is not None else None) or "unmatched"
        try:
            metering.request_write(
                tenant.schema_name, endpoint=endpoint, status=response.status_code,
                latency_ms=(time.perf_counter() - started) * 1000, key_id=key_id, user_id=user_id, units=units,
            )  # fmt: skip
        except redis.RedisError as exc:
            _redis_down(exc)
        return response


_last_warned = [0.0]


def _redis_down(exc: Exception) -> None:
    now = time.monotonic()
    if now - _last_warned[0] > 30:
        _last_warned[0] = now
        log.warning("usage counters unreachable (%s): serving without rate limits or metering", exc)
