"""Plan limits and usage counters, in Redis so hot paths never import analytics.

    limit_check(tenant, "decisions_per_day")      # raises plan_limit_exceeded (429) when over
    usage_increment(tenant, "api_requests")        # count without a cap
    usage_get(tenant, "decisions_per_day")         # today's count

Counters are per schema, metric and UTC day (``usage:<schema>:<metric>:<YYYYMMDD>``), kept 40
days; analytics rolls them up into the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import redis

from api.errors import ApplicationError

from .models import Tenant

_TTL = 40 * 86400
# Atomic check-and-increment: never counts past the cap, never double counts.
_CHECK_AND_INCR = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
if cap >= 0 and cur + amount > cap then return {0, cur} end
local new = redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, new}
"""
_client: redis.Redis | None = None
_script = None


def _redis() -> redis.Redis:
    global _client, _script
    if _client is None:
        from config.settings.services import REDIS_DB_USAGE, redis_db_url

        _client = redis.Redis.from_url(redis_db_url(REDIS_DB_USAGE), socket_timeout=2)
        _script = _client.register_script(_CHECK_AND_INCR)
    return _client


def _key(tenant: Tenant, metric: str, day: dt.date | None = None) -> str:
    day = day or dt.datetime.now(dt.UTC).date()
    return f"usage:{tenant.schema_name}:{metric}:{day:%Y%m%d}"


@dataclass(frozen=True)
class Usage:
    metric: str
    used: int
    limit: int | None

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


def plan_limit(tenant: Tenant, metric: str) -> int | None:
    """The plan's cap for ``metric``; None means unlimited (also for metrics a plan doesn't name)."""
    value = (tenant.plan.limits or {}).get(metric)
    return None if value is None else int(value)


def limit_check(tenant: Tenant, metric: str, amount: int = 1) -> Usage:
    """Consume ``amount`` of today's ``metric`` or raise ``plan_limit_exceeded`` (HTTP 429)."""
    cap = plan_limit(tenant, metric)
    _redis()
    ok, used = _script(keys=[_key(tenant, metric)], args=[amount, -1 if cap is None else cap, _TTL])
    if not ok:
        raise ApplicationError(
            "plan_limit_exceeded",
            f"Your plan '{tenant.plan.code}' allows {cap} {metric.replace('_', ' ')}; "
            "upgrade the plan or wait for the daily reset (00:00 UTC).",
            {"metric": metric, "limit": cap, "used": int(used), "plan": tenant.plan.code},
            status=429,
        )
    return Usage(metric, int(used), cap)


def usage_increment(tenant: Tenant, metric: str, amount: int = 1) -> int:
    key = _key(tenant, metric)
    pipe = _redis().pipeline()
    pipe.incrby(key, amount)
    pipe.expire(key, _TTL)
    return int(pipe.execute()[0])


def usage_get(tenant: Tenant, metric: str, day: dt.date | None = None) -> Usage:
    raw = _redis().get(_key(tenant, metric, day))
    return Usage(metric, int(raw or 0), plan_limit(tenant, metric))


def count_check(tenant: Tenant, metric: str, current: int) -> None:
    """For stock limits (api_keys, members, models): raise when ``current`` already reaches the cap."""
    cap = plan_limit(tenant, metric)
    if cap is not None and current >= cap:
        raise ApplicationError(
            "plan_limit_exceeded",
            f"Your plan '{tenant.plan.code}' allows at most {cap} {metric.replace('_', ' ')}; "
            "upgrade the plan or remove one first.",
            {"metric": metric, "limit": cap, "used": current, "plan": tenant.plan.code},
            status=429,
        )
