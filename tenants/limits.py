"""Plan limits: quotas per day or month, counted in Redis so hot paths never import analytics.

    limit_check(tenant, "decisions_per_day")          # consume one, or raise decisions_per_day_exceeded
    limit_check(tenant, "backtest_bars_per_month", n)  # 402 backtest_bars_per_month_exceeded when over
    usage_get(tenant, "decisions_per_day")            # this period's count, with the plan's cap
    count_check(tenant, "models", current)            # stock limits (keys, members, models)

A quota's period is in its name (``_per_day`` resets at 00:00 UTC, ``_per_month`` on the 1st).
Over a daily quota: 429 with ``Retry-After`` until the reset; over a monthly one: 402 (it takes an
upgrade). The code names the quota (``<metric>_exceeded``). Counters are per schema, metric and
period (``usage:<schema>:<metric>:<YYYYMMDD|YYYYMM>``), kept 40 / 400 days. The plan is read from
the tenant object, which tenant resolution refreshes within a second of a plan change.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import redis

from api.errors import ApplicationError

from .models import Tenant

_TTL = {"day": 40 * 86400, "month": 400 * 86400}
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


def period_of(metric: str) -> str:
    return "month" if metric.endswith("_per_month") else "day"


def period_end(metric: str, now: dt.datetime | None = None) -> dt.datetime:
    """When ``metric``'s current period ends (its counter starts again)."""
    now = now or dt.datetime.now(dt.UTC)
    if period_of(metric) == "month":
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return (first + dt.timedelta(days=32)).replace(day=1)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)


def _key(tenant: Tenant, metric: str, day: dt.date | None = None) -> str:
    day = day or dt.datetime.now(dt.UTC).date()
    stamp = f"{day:%Y%m}" if period_of(metric) == "month" else f"{day:%Y%m%d}"
    return f"usage:{tenant.schema_name}:{metric}:{stamp}"


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
    """Consume ``amount`` of this period's ``metric``, or raise ``<metric>_exceeded`` (nothing consumed)."""
    cap = plan_limit(tenant, metric)
    _redis()
    period = period_of(metric)
    ok, used = _script(keys=[_key(tenant, metric)], args=[amount, -1 if cap is None else cap, _TTL[period]])
    if cap:
        _quota_crossings(tenant, metric, int(used) - (amount if ok else 0), int(used) if ok else cap + 1, cap)
    if not ok:
        from ops import metrics

        metrics.limit_rejected(metric, tenant)
        now = dt.datetime.now(dt.UTC)
        reset = period_end(metric, now)
        what = metric.rsplit("_per_", 1)[0].replace("_", " ")
        details = {"quota": metric, "limit": cap, "used": int(used), "requested": amount, "plan": tenant.plan.code,
                   "resets_at": reset.isoformat()}  # fmt: skip
        if period == "month":
            raise ApplicationError(
                f"{metric}_exceeded",
                f"This month's {what} ({cap:,} on plan '{tenant.plan.code}') would be exceeded ({int(used):,} used, "
                f"{amount:,} asked). Upgrade the plan (Billing) or wait until {reset:%Y-%m-%d}.",
                details, status=402,
            )  # fmt: skip
        raise ApplicationError(
            f"{metric}_exceeded",
            f"Today's {what} ({cap:,} on plan '{tenant.plan.code}') are used up. Retry after 00:00 UTC or upgrade "
            "the plan (Billing).",
            details, status=429, headers={"Retry-After": str(max(1, int((reset - now).total_seconds())))},
        )  # fmt: skip
    return Usage(metric, int(used), cap)


def _quota_crossings(tenant: Tenant, metric: str, before: int, after: int, cap: int) -> None:
    """Tell the tenant (notifications ``quota.80`` / ``quota.100``) when this period's use of
    ``metric`` crosses 80 % and 100 % of its cap: once each per period (a Redis flag), after the
    caller's transaction commits. Costs nothing on other requests (two comparisons)."""
    crossed = [level for level in (80, 100) if before * 100 < level * cap <= after * 100]
    if not crossed:
        return
    from django.db import transaction

    stamp = _key(tenant, metric).rsplit(":", 1)[1]
    for level in crossed:
        flag = f"quota-told:{tenant.schema_name}:{metric}:{stamp}:{level}"
        try:
            if not _redis().set(flag, 1, nx=True, ex=_TTL[period_of(metric)]):
                continue
        except redis.RedisError:
            continue
        data = {"quota": metric, "level": level, "limit": cap, "used": min(after, cap), "plan": tenant.plan.code,
                "resets_at": period_end(metric).isoformat()}  # fmt: skip
        transaction.on_commit(lambda level=level, data=data: _quota_notify(tenant.schema_name, level, data, stamp))


def _quota_notify(schema: str, level: int, data: dict, stamp: str) -> None:
    from django_tenants.utils import schema_context

    from notifications.services import emit

    try:
        with schema_context(schema):
            emit(f"quota.{level}", data, dedupe_key=f"quota:{data['quota']}:{stamp}:{level}")
    except Exception:  # noqa: BLE001 - a notification never fails the request that used the quota
        import logging

        logging.getLogger(__name__).exception("quota notification for %s not recorded", schema)


def usage_increment(tenant: Tenant, metric: str, amount: int = 1) -> int:
    key = _key(tenant, metric)
    pipe = _redis().pipeline()
    pipe.incrby(key, amount)
    pipe.expire(key, _TTL[period_of(metric)])
    return int(pipe.execute()[0])


def usage_get(tenant: Tenant, metric: str, day: dt.date | None = None) -> Usage:
    raw = _redis().get(_key(tenant, metric, day))
    return Usage(metric, int(raw or 0), plan_limit(tenant, metric))


def count_check(tenant: Tenant, metric: str, current: int) -> None:
    """For stock limits (api_keys, members, models): raise when ``current`` already reaches the cap."""
    cap = plan_limit(tenant, metric)
    if cap is not None and current >= cap:
        from ops import metrics

        metrics.limit_rejected(metric, tenant)
        raise ApplicationError(
            "plan_limit_exceeded",
            f"Your plan '{tenant.plan.code}' allows at most {cap} {metric.replace('_', ' ')}; "
            "upgrade the plan or remove one first.",
            {"metric": metric, "limit": cap, "used": current, "plan": tenant.plan.code},
            status=429,
        )


# --- WebSocket connections: a plan's concurrent sockets, shared by every edge process ----------

WS_SLOT_TTL_S = 90  # a slot not refreshed for this long (its process died) is free again
_WS_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local cap = tonumber(ARGV[3])
if cap >= 0 and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
_ws_script = None


def _ws_key(schema: str) -> str:
    return f"wsconn:{schema}"


def ws_slot_acquire(tenant: Tenant, conn_id: str) -> Usage | None:
    """Take one of the plan's ``websocket_connections`` for ``conn_id``; None when all are taken."""
    global _ws_script
    r = _redis()
    if _ws_script is None:
        _ws_script = r.register_script(_WS_ACQUIRE)
    cap = plan_limit(tenant, "websocket_connections")
    now = time.time()
    key = _ws_key(tenant.schema_name)
    ok = _ws_script(keys=[key], args=[now, now + WS_SLOT_TTL_S, -1 if cap is None else cap, conn_id, WS_SLOT_TTL_S * 2])
    return Usage("websocket_connections", int(r.zcard(key)), cap) if ok else None


def ws_slots_refresh(schema: str, conn_ids: list[str]) -> None:
    """Keep live sockets' slots (every heartbeat): ``ZADD XX`` moves their expiry, adds nothing."""
    if not conn_ids:
        return
    expiry = time.time() + WS_SLOT_TTL_S
    pipe = _redis().pipeline(transaction=False)
    pipe.zadd(_ws_key(schema), dict.fromkeys(conn_ids, expiry), xx=True)
    pipe.expire(_ws_key(schema), WS_SLOT_TTL_S * 2)
    pipe.execute()


def ws_slot_release(schema: str, conn_id: str) -> None:
    _redis().zrem(_ws_key(schema), conn_id)


def ws_connections(schema: str) -> int:
    return int(_redis().zcount(_ws_key(schema), time.time(), "+inf"))
