"""Reads for the staff console (/app/staff/tenants/): every tenant with its plan, usage this period,
health and last activity, and one tenant's detail. Read only: nothing here writes, and nothing
returns a secret (API keys by name and prefix only). Per-tenant figures of a page of tenants are
read with one UNION ALL query over their schemas, not a query per tenant."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery

from tenants.models import ApiKey, Membership, Tenant

from .health import per_schema

CONSOLE_PAGE = 25


def tenant_console_list() -> QuerySet[Tenant]:
    """Tenants (not the template) by slug, each with its member count, its members' e-mails (what
    the console's search also reads), their last log-in and its keys' last use."""
    from django.db.models import StringAgg, Value

    def per_tenant(qs, **aggregate):
        (name,) = aggregate
        return Subquery(qs.filter(tenant=OuterRef("pk")).values("tenant").annotate(**aggregate).values(name))

    return (
        Tenant.objects.exclude(status=Tenant.Status.TEMPLATE)
        .select_related("plan")
        .annotate(
            members=per_tenant(Membership.objects, n=Count("id")),
            member_emails=per_tenant(Membership.objects, emails=StringAgg("user__email", Value(","))),
            last_login=per_tenant(Membership.objects, at=Max("user__last_login")),
            last_key_use=per_tenant(ApiKey.objects, at=Max("last_used_at")),
        )
        .order_by("slug")
    )


def _month_start(now: dt.datetime) -> dt.date:
    return now.date().replace(day=1)


def tenant_activity(*, tenants: list[Tenant], now: dt.datetime | None = None) -> dict[str, dict]:
    """Per schema: decisions and API requests this month (rollups + the meter not yet flushed),
    today's decisions against the plan's daily quota, and the last decision's time."""
    from analytics.models import UsageDaily
    from intelligence.models import Decision
    from tenants import limits, metering

    now = now or dt.datetime.now(dt.UTC)
    schemas = [t.schema_name for t in tenants]
    out: dict[str, dict] = {
        s: {"decisions_month": 0, "requests_month": 0, "last_decision_at": None, "decisions_today": None}
        for s in schemas
    }
    if not schemas:
        return out
    month = _month_start(now)
    for schema, requests, decisions in per_schema(
        "SELECT %s, coalesce(sum(count) FILTER (WHERE kind = 'request'), 0), "
        "coalesce(sum(count) FILTER (WHERE kind = 'unit' AND name = 'decision'), 0) "
        f"FROM {{schema}}.{UsageDaily._meta.db_table} WHERE day >= %s",
        schemas,
        [month],
    ):
        out[schema]["requests_month"] += int(requests)
        out[schema]["decisions_month"] += int(decisions)
    for schema, at in per_schema(
        f"SELECT %s, created_at FROM {{schema}}.{Decision._meta.db_table} ORDER BY id DESC LIMIT 1", schemas, []
    ):
        out[schema]["last_decision_at"] = at
    try:
        r = limits._redis()
        wanted = set(schemas)
        keys = []
        for raw in r.smembers(metering.KEYS_SET):
            _, schema, stamp = raw.decode().split(":")
            if schema in wanted and metering.hour_of(stamp).date() >= month:
                keys.append((schema, raw))
        pipe = r.pipeline(transaction=False)
        for _, key in keys:
            pipe.hgetall(key)
        for (schema, _), fields in zip(keys, pipe.execute(), strict=True):
            for name, n in fields.items():
                count = metering.count_of(name.decode())
                if count and count[0] == "request":
                    out[schema]["requests_month"] += int(n)
                elif count and count[1] == "decision":
                    out[schema]["decisions_month"] += int(n)
        for t in tenants:
            used = limits.usage_get(t, "decisions_per_day")
            out[t.schema_name]["decisions_today"] = {"used": used.used, "limit": used.limit}
    except Exception:  # noqa: BLE001, S110 - Redis down: the month's rollups still show; the health page says why
        pass
    return out


def tenant_detail(*, tenant: Tenant, now: dt.datetime | None = None) -> dict:
    """One tenant, read only, in its schema (the caller enters it): members, API keys (names and
    prefixes), models with their production and challenger versions, decision counts, alerts and
    quota use. Never a secret, never a write."""
    from analytics.models import Alert
    from analytics.selectors import quotas_report
    from intelligence.models import Decision
    from models_registry.models import ModelAlias, RegisteredModel

    now = now or dt.datetime.now(dt.UTC)
    members = list(
        Membership.objects.filter(tenant=tenant)
        .select_related("user")
        .order_by("-role", "user__email")
        .values("user_id", "user__email", "role", "created_at", "user__last_login", "user__is_active")
    )
    keys = list(
        ApiKey.objects.filter(tenant=tenant)
        .order_by("-created_at")
        .values("name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    )
    aliases = defaultdict(dict)
    for model_id, name, version in ModelAlias.objects.values_list("model_id", "name", "version__version"):
        aliases[model_id][name] = version
    models = [
        {
            "name": m.name,
            "versions": m.n_versions,
            "latest": m.latest,
            "production": aliases[m.pk].get("production"),
            "challenger": aliases[m.pk].get("challenger"),
            "created_at": m.created_at,
        }
        for m in RegisteredModel.objects.annotate(n_versions=Count("versions"), latest=Max("versions__version"))
    ]
    day, week = now - dt.timedelta(hours=24), now - dt.timedelta(days=7)
    # the last 7 days only (BRIN on created_at): an all-time count would scan every decision
    counts = Decision.objects.filter(created_at__gte=week).aggregate(
        week=Count("id"), day=Count("id", filter=Q(created_at__gte=day))
    )
    by_action = dict(
        Decision.objects.filter(created_at__gte=day).values_list("action").annotate(n=Count("id")).order_by()
    )
    last = Decision.objects.order_by("-id").values_list("created_at", flat=True).first()
    try:
        quotas, quotas_error = quotas_report(tenant=tenant, now=now), ""
    except Exception as exc:  # noqa: BLE001 - the counters live in Redis
        quotas, quotas_error = [], f"quota counters unreadable ({type(exc).__name__}); see the health page"
    return {
        "members": members,
        "keys": keys,
        "models": models,
        "decisions": {**counts, "by_action_24h": by_action, "last_at": last},
        "alerts_firing": list(Alert.objects.filter(state=Alert.State.FIRING).order_by("-started_at")[:50]),
        "alerts_recent": list(Alert.objects.filter(state=Alert.State.RESOLVED).order_by("-started_at")[:10]),
        "quotas": quotas,
        "quotas_error": quotas_error,
    }
