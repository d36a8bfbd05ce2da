"""In-process cache for tenant resolution: API-key prefix -> key info, host -> tenant, id -> tenant.

django-tenants' stock middleware queries the domain table on every request (~1.3 ms of a 1.7 ms
request here). We cache for TENANT_RESOLUTION_TTL seconds and invalidate explicitly: a revoke or a
tenant change bumps a generation counter in Redis, which every process checks at most once a
second — so a revoked key stops working everywhere within ~1 s, and locally at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.utils import timezone

from .keys import key_matches, key_prefix
from .models import ApiKey, Domain, Tenant

_GEN_KEY = "tenants:resolution:generation"
_lock = threading.Lock()
_cache: dict[tuple, tuple[float, object]] = {}
_state = {"generation": None, "checked_at": 0.0}
_last_used_written: dict[int, float] = {}
_MISSING = object()


@dataclass(frozen=True)
class KeyInfo:
    id: int
    prefix: str
    hashed_key: str
    tenant_id: int
    scopes: tuple[str, ...]
    revoked: bool


_redis: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _redis
    if _redis is None:
        from config.settings.services import REDIS_DB_CACHE, redis_db_url

        _redis = redis.Redis.from_url(redis_db_url(REDIS_DB_CACHE), socket_timeout=2)
    return _redis


def _sync_generation() -> None:
    now = time.monotonic()
    if now - _state["checked_at"] < 1.0:
        return
    _state["checked_at"] = now
    try:
        gen = redis_client().get(_GEN_KEY)
    except redis.RedisError:
        return  # Redis down: keep serving from the TTL-bounded cache
    if gen != _state["generation"]:
        with _lock:
            _cache.clear()
        _state["generation"] = gen


def invalidate() -> None:
    """Drop every process's resolution cache (call after revoking a key or changing a tenant)."""
    with _lock:
        _cache.clear()
    _state["checked_at"] = 0.0
    redis_client().incr(_GEN_KEY)


def _cached(key: tuple, loader):
    _sync_generation()
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = loader()
    with _lock:
        _cache[key] = (now + settings.TENANT_RESOLUTION_TTL, value)
    return value


def tenant_by_id(tenant_id: int) -> Tenant | None:
    def load():
        return Tenant.objects.select_related("plan").filter(pk=tenant_id, status=Tenant.Status.ACTIVE).first()

    return _cached(("tenant", tenant_id), load)


def tenant_by_host(host: str) -> Tenant | None:
    host = host.split(":", 1)[0].lower()

    def load():
        domain = Domain.objects.filter(domain=host).only("tenant_id").first()
        return domain.tenant_id if domain else None

    tenant_id = _cached(("host", host), load)
    return tenant_by_id(tenant_id) if tenant_id else None


def api_key_resolve(raw: str) -> KeyInfo | None:
    """Return the active key for ``raw`` or None (unknown, malformed, revoked or wrong secret)."""
    prefix = key_prefix(raw)
    if prefix is None:
        return None

    def load():
        row = (
            ApiKey.objects.filter(prefix=prefix)
            .values_list("id", "hashed_key", "tenant_id", "scopes", "revoked_at")
            .first()
        )
        if row is None:
            return None
        return KeyInfo(
            id=row[0],
            prefix=prefix,
            hashed_key=row[1],
            tenant_id=row[2],
            scopes=tuple(row[3]),
            revoked=row[4] is not None,
        )

    info = _cached(("key", prefix), load)
    if info is None or info.revoked or not key_matches(raw, info.hashed_key):
        return None
    _touch_last_used(info.id)
    return info


def _touch_last_used(key_id: int) -> None:
    """Record last use at most once a minute per key and process (no write per request)."""
    now = time.monotonic()
    if now - _last_used_written.get(key_id, -1e9) < 60:
        return
    _last_used_written[key_id] = now
    ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())


def reset_local() -> None:
    """Tests: forget everything cached in this process."""
    with _lock:
        _cache.clear()
    _last_used_written.clear()
    _state.update(generation=None, checked_at=0.0)
