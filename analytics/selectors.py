"""Reads of a tenant's usage: per unit and endpoint over time from the rollups (never a scan of
events), the hour not yet flushed added from the Redis meter, quotas with a forecast."""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict

from django.db import connection
from django.db.models import Count, Sum

from tenants import limits, metering

from .models import Kind, LatencyHourly, UsageDaily, UsageHourly

QUOTAS = ("decisions_per_day", "training_jobs_per_month", "backtest_bars_per_month")


def _unflushed(schema: str) -> list[tuple[dt.datetime, str, str, str, int, int, int]]:
    """Counts still in Redis (this hour and any hour the beat has not flushed yet), as rows."""
    r = limits._redis()
    metering.barrier()
    rows = []
    for key in r.smembers(metering.KEYS_SET):
        key = key.decode()
        if not key.startswith(f"meter:{schema}:"):
            continue
        hour = metering.hour_of(key.rsplit(":", 1)[1])
        for field, value in r.hgetall(key).items():
            count = metering.count_of(field.decode())
            if count is not None:
                rows.append((hour, *count, int(value)))
    return rows


def _percentile(bins: list[int], p: float) -> float | None:
    """The upper bound (ms) of the histogram bin holding the p-th percentile."""
    total = sum(bins)
    if not total:
        return None
    bounds = metering.LATENCY_BINS_MS
    need, seen = p * total, 0
    for i, n in enumerate(bins):
        seen += n
        if seen >= need:
            return float(bounds[i]) if i < len(bounds) else float(bounds[-1]) * 2
    return float(bounds[-1]) * 2


def usage_report(*, tenant, days: int = 30, granularity: str = "day", now: dt.datetime | None = None) -> dict:
    now = now or dt.datetime.now(dt.UTC)
    start = (now - dt.timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "hour":
        start = (now - dt.timedelta(hours=days * 24 - 1)).replace(minute=0, second=0, microsecond=0)
    series: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    endpoints: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    keys: dict[int, int] = defaultdict(int)
    users: dict[int, int] = defaultdict(int)

    def label(t: dt.datetime | dt.date) -> str:
        return t.strftime("%Y-%m-%dT%H:00Z") if granularity == "hour" else f"{t:%Y-%m-%d}"

    def add(t: dt.datetime | dt.date, kind, name, status, key_id, user_id, n):
        if kind == Kind.UNIT:
            series[name][label(t)] += n
        else:
            series["request"][label(t)] += n
            endpoints[name][status] += n
            if key_id:
                keys[key_id] += n
            if user_id:
                users[user_id] += n

    # aggregated in the database in one scan (grouping sets): a point per unit and period, requests
    # per endpoint and status, per key, per user — never the rollup rows themselves into Python
    table, column = (UsageHourly, "hour") if granularity == "hour" else (UsageDaily, "day")
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {column}, kind, name, status, api_key_id, user_id, sum(count), "
            f"GROUPING({column}, name, status, api_key_id, user_id) FROM {table._meta.db_table} "
            f"WHERE {column} >= %s GROUP BY GROUPING SETS "
            f"(({column}, kind, name), (kind, name, status), (kind, api_key_id), (kind, user_id))",
            [start if granularity == "hour" else start.date()],
        )
        for t, kind, name, status, key_id, user_id, n, g in cur.fetchall():
            n = int(n)
            if g == 0b00111:  # period, kind, name
                series["request" if kind == Kind.REQUEST else name][label(t)] += n
            elif kind != Kind.REQUEST:
                continue
            elif g == 0b10011:  # name, status
                endpoints[name][status] += n
            elif g == 0b11101 and key_id:
                keys[key_id] += n
            elif g == 0b11110 and user_id:
                users[user_id] += n
    for hour, *rest in _unflushed(tenant.schema_name):
        if hour >= start:
            add(hour if granularity == "hour" else hour.date(), *rest)

    latency: dict[str, list[int]] = {}
    totals: dict[str, int] = defaultdict(int)
    for endpoint, bins, total_us in LatencyHourly.objects.filter(hour__gte=start).values_list(
        "endpoint", "bins", "total_us"
    ):
        acc = latency.setdefault(endpoint, [0] * len(bins))
        for i, n in enumerate(bins):
            acc[i] += n
        totals[endpoint] += total_us
    endpoint_rows = []
    for name in sorted(endpoints, key=lambda e: -sum(endpoints[e].values())):
        counts = endpoints[name]
        total = sum(counts.values())
        errors = counts.get("5xx", 0)
        bins = latency.get(name, [])
        n_lat = sum(bins)
        endpoint_rows.append(
            {
                "endpoint": name,
                "requests": total,
                "by_status": dict(sorted(counts.items())),
                "error_rate": errors / total if total else 0.0,
                "client_error_rate": (counts.get("4xx", 0) + counts.get("429", 0)) / total if total else 0.0,
                "rate_limited": counts.get("429", 0),
                "p50_ms": _percentile(bins, 0.5),
                "p99_ms": _percentile(bins, 0.99),
                "mean_ms": round(totals[name] / n_lat / 1000, 3) if n_lat else None,
            }
        )
    return {
        "start": start.isoformat(),
        "end": now.isoformat(),
        "granularity": granularity,
        "units": {name: [{"t": t, "count": n} for t, n in sorted(points.items())] for name, points in series.items()},
        "totals": {name: sum(points.values()) for name, points in series.items()},
        "endpoints": endpoint_rows,
        "api_keys": [{"api_key_id": k, "requests": n} for k, n in sorted(keys.items(), key=lambda kv: -kv[1])],
        "users": [{"user_id": u, "requests": n} for u, n in sorted(users.items(), key=lambda kv: -kv[1])],
        "quotas": quotas_report(tenant=tenant, now=now),
    }


def quotas_report(*, tenant, now: dt.datetime | None = None) -> list[dict]:
    """Each quota's use in its period, and where the period's pace leads: "you will hit X on day Y"."""
    now = now or dt.datetime.now(dt.UTC)
    out = []
    for quota in QUOTAS:
        u = limits.usage_get(tenant, quota)
        end = limits.period_end(quota, now)
        if limits.period_of(quota) == "month":
            begin = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            length = dt.timedelta(days=calendar.monthrange(now.year, now.month)[1])
        else:
            begin = now.replace(hour=0, minute=0, second=0, microsecond=0)
            length = dt.timedelta(days=1)
        elapsed = max((now - begin).total_seconds(), 60.0)
        rate = u.used / elapsed  # per second, this period so far
        projected = int(round(u.used + rate * (end - now).total_seconds()))
        hits_at = None
        if u.limit is not None and rate > 0 and u.used < u.limit and projected > u.limit:
            hits_at = now + dt.timedelta(seconds=(u.limit - u.used) / rate)
        out.append(
            {
                "quota": quota,
                "used": u.used,
                "limit": u.limit,
                "share": (u.used / u.limit) if u.limit else None,
                "resets_at": end.isoformat(),
                "projected": projected,
                "exceeds_at": hits_at.isoformat() if hits_at else None,
                "forecast": (
                    "unlimited" if u.limit is None
                    else "used up" if u.used >= u.limit
                    else f"at this pace you will hit {u.limit:,} on {hits_at:%Y-%m-%d %H:%M} UTC" if hits_at
                    else f"at this pace about {projected:,} of {u.limit:,} by {end:%Y-%m-%d}"
                ),
                "period_length_s": int(length.total_seconds()),
            }
        )  # fmt: skip
    return out


def unit_total(*, unit: str, since: dt.date, until: dt.date | None = None) -> int:
    """A metered unit's count over [since, until) from the daily rollup (billing reads it)."""
    rows = UsageDaily.objects.filter(kind=Kind.UNIT, name=unit, day__gte=since)
    if until is not None:
        rows = rows.filter(day__lt=until)
    return rows.aggregate(n=Sum("count"))["n"] or 0


# --- live performance ------------------------------------------------------------------------------


def performance_report(*, days: int = 30) -> dict:
    """Live accuracy (consensus, per model version, per agent) per market day with verdicts against
    a coin and the seed targets, the paper P&L of the decisions with Sharpe and drawdown, decision
    latency, the consensus' calibration and the stream's throughput; from daily rollups."""
    import math

    import numpy as np

    from intelligence.learning import TARGETS, Tally
    from intelligence.ledger import LedgerConfig
    from intelligence.models import Decision

    from .models import PerformanceDaily

    last = PerformanceDaily.objects.order_by("-day").values_list("day", flat=True).first()
    if last is None:
        return {"days": days, "start": None, "end": None, "consensus": None, "models": [], "agents": [],
                "calibration": _calibration(), "stream": _throughput(Decision), "targets": TARGETS}  # fmt: skip
    first = last - dt.timedelta(days=days - 1)
    rows = list(PerformanceDaily.objects.filter(day__gte=first, day__lte=last).order_by("day"))
    equity0 = LedgerConfig.from_flow(_active_flow()).equity
    cons = [r for r in rows if r.kind == "consensus"]
    pnl = np.array([r.pnl for r in cons], dtype=float)
    equity = equity0 + np.cumsum(pnl) if len(pnl) else np.array([])
    peak = np.maximum.accumulate(np.concatenate([[equity0], equity]))[1:] if len(equity) else np.array([])
    drawdown = (equity - peak) / peak if len(equity) else np.array([])
    rets = pnl / np.concatenate([[equity0], equity[:-1]]) if len(pnl) else np.array([])
    sharpe = float(rets.mean() / rets.std(ddof=1) * math.sqrt(252)) if len(rets) > 2 and rets.std(ddof=1) > 0 else None
    total = Tally(sum(r.resolved for r in cons), sum(r.hits for r in cons))
    consensus = {
        "series": [
            {"day": f"{r.day}", "decisions": r.decisions, "resolved": r.resolved,
             "accuracy": round(r.hits / r.resolved, 4) if r.resolved else None, "pnl": round(r.pnl, 2),
             "equity": round(float(e), 2), "drawdown": round(float(d), 5),
             "latency_p50_ms": r.latency_p50_ms, "latency_p99_ms": r.latency_p99_ms}
            for r, e, d in zip(cons, equity, drawdown, strict=True)
        ],
        "decisions": sum(r.decisions for r in cons),
        "accuracy": total.report(TARGETS["consensus"]),
        "pnl": round(float(pnl.sum()), 2) if len(pnl) else 0.0,
        "return_pct": round(float(pnl.sum()) / equity0 * 100, 4) if len(pnl) else 0.0,
        "sharpe": None if sharpe is None else round(sharpe, 3),
        "max_drawdown_pct": round(float(drawdown.min()) * 100, 3) if len(drawdown) else 0.0,
        "latency_p50_ms": _median([r.latency_p50_ms for r in cons]),
        "latency_p99_ms": max((r.latency_p99_ms for r in cons if r.latency_p99_ms is not None), default=None),
        "equity_start": equity0,
    }  # fmt: skip
    return {
        "days": days,
        "start": f"{first}",
        "end": f"{last}",
        "consensus": consensus,
        "models": _by_name(rows, "model", TARGETS["model"], Tally),
        "agents": _by_name(rows, "agent", TARGETS["agent"], Tally),
        "calibration": _calibration(),
        "stream": _throughput(Decision),
        "targets": TARGETS,
        "note": "accuracy on resolved BUY/SELL decisions (HOLD is not scored); a target counts as met only when "
        "the whole 95 % interval clears it; days are the bars' market days; P&L is the paper ledger's, net of fees",
    }


def _by_name(rows, kind: str, target: float, Tally) -> list[dict]:
    names: dict[str, list] = defaultdict(list)
    for r in rows:
        if r.kind == kind:
            names[r.name].append(r)
    out = []
    for name, items in sorted(names.items()):
        tally = Tally(sum(r.resolved for r in items), sum(r.hits for r in items))
        out.append(
            {
                "name": name,
                **tally.report(target),
                "series": [
                    {
                        "day": f"{r.day}",
                        "resolved": r.resolved,
                        "accuracy": round(r.hits / r.resolved, 4) if r.resolved else None,
                    }
                    for r in items
                ],  # fmt: skip
            }
        )
    return out


def _median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def _active_flow() -> dict:
    from intelligence.consensus import resolve_flow
    from intelligence.models import Flow

    row = Flow.objects.filter(active=True).first()
    return resolve_flow(row.config if row else {})


def _calibration() -> list[dict]:
    """The consensus engine's reliability table as it stands (stated confidence vs observed)."""
    from intelligence.consensus import ConsensusEngine
    from intelligence.models import EngineState

    state = EngineState.objects.order_by("-updated_at").first()
    if state is None or not state.state:
        return []
    try:
        return ConsensusEngine.from_json(state.state).calibration_table()
    except Exception:  # noqa: BLE001 - an unreadable state is no calibration, not an error page
        return []


def _throughput(Decision) -> dict:
    """Stream decisions per minute over the last hour (by the time they were made)."""
    from django.db.models.functions import TruncMinute
    from django.utils import timezone

    since = timezone.now() - dt.timedelta(hours=1)
    per_minute = list(
        Decision.objects.filter(source="stream", created_at__gte=since)
        .annotate(m=TruncMinute("created_at"))
        .values("m")
        .annotate(n=Count("id"))
        .order_by("m")
        .values_list("m", "n")
    )
    last = per_minute[-1][1] if per_minute else 0
    return {
        "per_minute": [{"t": m.isoformat(), "count": n} for m, n in per_minute],
        "last_minute_per_second": round(last / 60, 3),
        "peak_per_second": round(max((n for _, n in per_minute), default=0) / 60, 3),
    }


# --- the tenant dashboard (seed ``tenant-dashboard``) ----------------------------------------------


def _workflow_jobs() -> list[dict]:
    """Running workflows (and those awaiting approval) as jobs, with their overall percent."""
    from orchestration import selectors as orchestration

    out = []
    for wf in orchestration.workflows_active()[:20]:
        steps = list(wf.steps.all())
        percent = orchestration.workflow_percent(steps, orchestration.stored_percents(steps))
        out.append({"kind": "workflow", "id": str(wf.pk), "name": wf.model_name, "state": wf.state,
                    "percent": percent})  # fmt: skip
    return out


def tenant_dashboard(*, tenant, now: dt.datetime | None = None) -> dict:
    """Is everything OK and what is it doing: today's decisions, accuracy and P&L, production
    models with their live accuracy and circuit, running jobs, firing alerts, quotas, the stream,
    availability."""
    from django.db.models import F
    from django.utils import timezone

    from backtesting.models import BacktestRun
    from intelligence.learning import TARGETS, Tally
    from intelligence.models import Decision, Fill
    from models_registry.models import JobState, ModelAlias, TrainingJob
    from ops.models import AvailabilityProbe

    from .alerts import alerts_firing
    from .models import Kind

    now = now or timezone.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = Decision.objects.filter(created_at__gte=midnight)
    resolved_today = Decision.objects.filter(resolved_at__gte=midnight).exclude(correct=None)
    pnl = Fill.objects.filter(at__gte=midnight).aggregate(n=Sum(F("realized_pnl") - F("fee")))["n"] or 0.0
    models = []
    for alias in ModelAlias.objects.filter(name="production").select_related("model", "version"):
        version = alias.version
        recent = list(
            Decision.objects.filter(model_version=version.ref)
            .exclude(model_correct=None)
            .order_by("-id")
            .values_list("model_correct", flat=True)[:200]
        )
        models.append(
            {
                "model": alias.model.name, "version": version.ref, "circuit": version.circuit,
                "offline_accuracy": ((version.report or {}).get("oos") or {}).get("accuracy"),
                "live": Tally(len(recent), sum(recent)).report(TARGETS["model"]),
            }
        )  # fmt: skip
    jobs = [
        {"kind": "training", "id": str(j.pk), "name": j.model_name, "state": j.state, "percent": j.percent}
        for j in TrainingJob.objects.filter(state__in=(JobState.QUEUED, JobState.RUNNING)).order_by("-created_at")[:20]
    ] + [
        {"kind": "backtest", "id": str(b.pk), "name": f"{b.strategy} {b.symbol}", "state": b.state,
         "percent": b.percent}
        for b in BacktestRun.objects.filter(state__in=(JobState.QUEUED, JobState.RUNNING)).order_by("-created_at")[:20]
    ] + _workflow_jobs()  # fmt: skip
    last_stream = Decision.objects.filter(source="stream").order_by("-id").values_list("created_at", flat=True).first()
    probes = AvailabilityProbe.objects.filter(at__gte=now - dt.timedelta(hours=24))
    counted = probes.count()
    requests = UsageDaily.objects.filter(kind=Kind.REQUEST, day__gte=(now - dt.timedelta(days=1)).date())
    total = requests.aggregate(n=Sum("count"))["n"] or 0
    fives = requests.filter(status="5xx").aggregate(n=Sum("count"))["n"] or 0
    return {
        "tenant": {"slug": tenant.slug, "name": tenant.name, "plan": tenant.plan.code},
        "today": {
            "decisions": today.count(),
            "accuracy": Tally(resolved_today.count(), resolved_today.filter(correct=True).count()).report(),
            "pnl": round(float(pnl), 2),
        },
        "production_models": models,
        "jobs": jobs,
        "alerts": [
            {
                "rule": a.rule,
                "message": a.message,
                "value": a.value,
                "threshold": a.threshold,
                "since": a.started_at.isoformat(),
            }
            for a in alerts_firing()
        ],  # fmt: skip
        "quotas": quotas_report(tenant=tenant, now=now),
        "stream": {
            "last_decision_at": last_stream.isoformat() if last_stream else None,
            "live": bool(last_stream and (now - last_stream).total_seconds() < 120),
        },
        "availability": {
            "probes_24h": counted,
            "ready_share_24h": round(probes.filter(ok=True).count() / counted, 5) if counted else None,
            "non_5xx_share_24h": round(1 - fives / total, 5) if total else None,
            "target": 0.995,
        },
    }


# --- alert rules and alerts (``analytics.alerts``) -------------------------------------------------


def alert_rule_list():
    """The tenant's rules, built-in first (created on first read)."""
    from .alerts import alert_rules_ensure
    from .models import AlertRule

    alert_rules_ensure()
    return AlertRule.objects.all()


def alert_rule_get(*, name: str):
    from api.errors import NotFound

    rule = alert_rule_list().filter(name=name).first()
    if rule is None:
        raise NotFound("alert rule")
    return rule


def alert_list(*, state: str | None = None, rule: str | None = None, since: dt.datetime | None = None):
    """Alerts newest first; ``since``: those still firing then or started after."""
    from django.db.models import Q

    from .models import Alert

    qs = Alert.objects.order_by("-id")
    if state:
        qs = qs.filter(state=state)
    if rule:
        qs = qs.filter(rule=rule)
    if since is not None:
        qs = qs.filter(Q(started_at__gte=since) | Q(resolved_at__gte=since) | Q(resolved_at=None))
    return qs


def alert_get(*, alert_id: int):
    from api.errors import NotFound

    from .models import Alert

    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is None:
        raise NotFound("alert")
    return alert


def metric_catalogue(*, now: dt.datetime | None = None) -> list[dict]:
    """Every metric a rule may watch, with its current value and the rules watching it."""
    from .metrics import METRICS, metric_values

    values = metric_values(now=now)
    watching = defaultdict(list)
    for name, metric in alert_rule_list().values_list("name", "metric"):
        watching[metric].append(name)
    return [
        {"name": m.name, "label": m.label, "unit": m.unit, "help": m.help, "value": values[m.name],
         "display": m.format(values[m.name]), "rules": watching.get(m.name, [])}
        for m in METRICS.values()
    ]  # fmt: skip
