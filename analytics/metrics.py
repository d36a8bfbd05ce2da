"""The metrics an alert rule may watch (``analytics.alerts``): each one's label, unit and a function
giving its current value for the current tenant (the connection's schema).

A value of ``None`` means "not enough data to judge" and is never alerted on: no alert on silence.
Each function is a few indexed queries (BRIN on the decisions' ``created_at``, the primary key,
rollups) or one Redis call, because every active tenant evaluates its enabled rules every minute.

Units: ``%`` marks a fraction shown as a percentage (thresholds are fractions: 0.995 is 99.5 %);
other units are appended to the number as they are.

    accuracy              live consensus accuracy, last 200 resolved BUY/SELL (>= 30 needed)
    inference_p99_ms      decision latency p99, the last hour's decisions
    error_rate            5xx share of the API requests, this and the previous hour (>= 100 requests)
    stream_tps            stream decisions per second, last 5 minutes (judged on a minute at least)
    availability          ready share of the web tier's probes, last 24 hours (>= 10 probes)
    controls              decisions held by a pre-trade control in 5 minutes, + 1 when halted by one
    decisions_1h          decisions made in the last hour (once the tenant has made any)
    confidence_1h         mean confidence of the last hour's BUY/SELL decisions
    model_accuracy        the weakest production model's live accuracy (last 200 outcomes, >= 30)
    pnl_today             the paper ledger's P&L today (UTC)
    drawdown              the paper ledger's drawdown from its peak equity
    drift_psi             the largest input/prediction PSI of a production model's latest drift check
    circuits_open         aliased model versions whose circuit is open or half-open
    training_failed_24h   training jobs that failed in the last 24 hours
    ws_connections        open WebSocket connections
    kill_switch           1 while a kill switch (the tenant's or the platform's) is engaged
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import DatabaseError, connection
from django.db.models import Aggregate, Avg, Count, F, FloatField, Q, Sum
from django.utils import timezone

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What the metric functions share within one evaluation: the time it is judged at."""

    now: dt.datetime
    cache: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str  # "%": a fraction shown as a percentage
    help: str
    compute: Callable[[Context], float | None] = field(repr=False, compare=False)

    def format(self, value: float | None) -> str:
        if value is None:
            return "no data"
        if self.unit == "%":
            return f"{value:.2%}"
        return f"{value:.4g}{self.unit}"


class _Percentile(Aggregate):
    """``percentile_disc(p) WITHIN GROUP (ORDER BY x)``: the p-quantile computed in PostgreSQL,
    without reading the rows into Python."""

    function = "percentile_disc"
    template = "%(function)s(%(p)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, p: float, **extra):
        super().__init__(expression, p=float(p), **extra)


# --- decisions ------------------------------------------------------------------------------------


def _accuracy(ctx: Context) -> float | None:
    from intelligence.models import Decision

    recent = list(Decision.objects.exclude(correct=None).order_by("-id").values_list("correct", flat=True)[:200])
    return sum(recent) / len(recent) if len(recent) >= 30 else None


def _inference_p99(ctx: Context) -> float | None:
    from intelligence.models import Decision

    row = Decision.objects.filter(created_at__gte=ctx.now - dt.timedelta(hours=1)).aggregate(
        p99=_Percentile("latency_ms", 0.99)
    )
    return row["p99"]


def _stream_tps(ctx: Context) -> float | None:
    from intelligence.models import Decision

    window = ctx.now - dt.timedelta(minutes=5)
    streamed = Decision.objects.filter(source="stream", created_at__gte=window)
    n = streamed.count()
    if not n:
        return None
    first = streamed.order_by("created_at").values_list("created_at", flat=True).first()
    span = max((ctx.now - first).total_seconds(), 1.0)
    return n / span if span >= 60 else None  # judged on a minute at least


def _controls(ctx: Context) -> float | None:
    from intelligence.models import Decision
    from tenants.models import KillSwitch

    window = ctx.now - dt.timedelta(minutes=5)
    held = Decision.objects.filter(created_at__gte=window, vetoed_by__startswith="control:").count()
    halted = KillSwitch.objects.filter(
        tenant__schema_name=connection.schema_name, lifted_at=None, engaged_by="system:controls"
    ).exists()
    return float(held + int(halted))


def _decisions_1h(ctx: Context) -> float | None:
    from intelligence.models import Decision

    n = Decision.objects.filter(created_at__gte=ctx.now - dt.timedelta(hours=1)).count()
    if n == 0 and not Decision.objects.exists():
        return None  # never decided anything: nothing to judge
    return float(n)


def _confidence_1h(ctx: Context) -> float | None:
    from intelligence.models import Action, Decision

    row = Decision.objects.filter(
        created_at__gte=ctx.now - dt.timedelta(hours=1), action__in=(Action.BUY, Action.SELL)
    ).aggregate(mean=Avg("confidence"))
    return row["mean"]


def _model_accuracy(ctx: Context) -> float | None:
    """The lowest live accuracy among the production versions (partial index on model outcomes)."""
    from intelligence.models import Decision
    from models_registry.models import ModelAlias

    worst = None
    refs = {
        f"{m}@{v}"
        for m, v in ModelAlias.objects.filter(name="production").values_list("model__name", "version__version")
    }
    for ref in sorted(refs):
        recent = list(
            Decision.objects.filter(model_version=ref)
            .exclude(model_correct=None)
            .order_by("-id")
            .values_list("model_correct", flat=True)[:200]
        )
        if len(recent) >= 30:
            share = sum(recent) / len(recent)
            worst = share if worst is None else min(worst, share)
    return worst


# --- the paper ledger -----------------------------------------------------------------------------


def _ledger(ctx: Context) -> tuple[float, object, object] | None:
    """(P&L now, today's LedgerDay or None, the latest earlier one or None); None before any trade."""
    if "ledger" not in ctx.cache:
        from intelligence.controls import ledger_totals
        from intelligence.models import LedgerDay, Position

        if not Position.objects.exists():
            ctx.cache["ledger"] = None
        else:
            today = ctx.now.date()
            days = list(LedgerDay.objects.filter(day__lte=today).order_by("-day")[:2])
            current = days[0] if days and days[0].day == today else None
            before = next((d for d in days if d.day < today), None)
            ctx.cache["ledger"] = (ledger_totals(), current, before)
    return ctx.cache["ledger"]


def _pnl_today(ctx: Context) -> float | None:
    """Today's paper P&L (realised and unrealised): against where the day opened when the halting
    controls keep the ledger's days, else the realised P&L net of fees of today's fills."""
    from intelligence.models import Fill

    ledger = _ledger(ctx)
    if ledger is None:
        return None
    pnl, today, before = ledger
    if today is not None or before is not None:
        opened = today.open_pnl if today is not None else before.last_pnl
        return pnl - opened
    midnight = ctx.now.replace(hour=0, minute=0, second=0, microsecond=0)
    row = Fill.objects.filter(at__gte=midnight).aggregate(
        n=Sum(F("realized_pnl") - F("fee"), output_field=FloatField())
    )
    return float(row["n"] or 0.0)


def _drawdown(ctx: Context) -> float | None:
    """(peak equity - equity) / peak equity, with the peak P&L the ledger's days carry (else the
    start): the same figure the ``max_drawdown_pct`` halting control reads, as a fraction."""
    from intelligence.ledger import LedgerConfig

    from .selectors import _active_flow

    ledger = _ledger(ctx)
    if ledger is None:
        return None
    pnl, today, before = ledger
    recorded = max((d.peak_pnl for d in (today, before) if d is not None), default=0.0)
    equity0 = LedgerConfig.from_flow(_active_flow()).equity
    peak_equity = equity0 + max(recorded, pnl, 0.0)
    return (peak_equity - (equity0 + pnl)) / peak_equity if peak_equity > 0 else None


# --- models ---------------------------------------------------------------------------------------


def _drift_psi(ctx: Context) -> float | None:
    from models_registry.models import ModelAlias

    worst = None
    for drift in ModelAlias.objects.filter(name="production").values_list("version__drift", flat=True):
        drift = drift or {}
        values = [drift.get("max_psi"), (drift.get("prediction") or {}).get("psi")]
        for v in values:
            if isinstance(v, int | float):
                worst = float(v) if worst is None else max(worst, float(v))
    return worst


def _circuits_open(ctx: Context) -> float | None:
    from models_registry.models import CircuitState, ModelAlias

    circuits = list(ModelAlias.objects.values_list("version__circuit", flat=True))
    if not circuits:
        return None  # nothing is served
    return float(sum(c != CircuitState.CLOSED for c in circuits))


def _training_failed_24h(ctx: Context) -> float | None:
    from models_registry.models import JobState, TrainingJob

    since = ctx.now - dt.timedelta(hours=24)
    return float(
        TrainingJob.objects.filter(state=JobState.FAILED)
        .filter(Q(finished_at__gte=since) | Q(finished_at=None, created_at__gte=since))
        .count()
    )


# --- platform -------------------------------------------------------------------------------------


def _ws_connections(ctx: Context) -> float | None:
    from tenants.limits import ws_connections

    return float(ws_connections(connection.schema_name))


def _kill_switch(ctx: Context) -> float | None:
    from tenants.models import KillSwitch

    engaged = KillSwitch.objects.filter(lifted_at=None).filter(
        Q(tenant=None) | Q(tenant__schema_name=connection.schema_name)
    )
    return float(engaged.exists())


# --- usage rollups and probes ---------------------------------------------------------------------


def _error_rate(ctx: Context) -> float | None:
    from .models import Kind, UsageHourly

    hour = ctx.now.replace(minute=0, second=0, microsecond=0)
    requests = UsageHourly.objects.filter(kind=Kind.REQUEST, hour__gte=hour - dt.timedelta(hours=1))
    row = requests.aggregate(total=Sum("count"), errors=Sum("count", filter=Q(status="5xx")))
    total = row["total"] or 0
    return (row["errors"] or 0) / total if total >= 100 else None


def _availability(ctx: Context) -> float | None:
    from ops.models import AvailabilityProbe

    row = AvailabilityProbe.objects.filter(at__gte=ctx.now - dt.timedelta(hours=24)).aggregate(
        n=Count("id"), ok=Count("id", filter=Q(ok=True))
    )
    return row["ok"] / row["n"] if row["n"] >= 10 else None


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "Live consensus accuracy", "%",
               "Share of the last 200 resolved BUY/SELL decisions that were right (30 needed).", _accuracy),
        Metric("inference_p99_ms", "Decision latency p99", " ms",
               "99th percentile of the decision latency over the last hour's decisions.", _inference_p99),
        Metric("error_rate", "API server error rate", "%",
               "Share of 5xx responses among the API requests of this and the previous hour (100 needed).",
               _error_rate),
        Metric("stream_tps", "Stream throughput", " decisions/s",
               "Stream decisions per second over the last 5 minutes, once the stream ran a minute.", _stream_tps),
        Metric("availability", "Availability", "%",
               "Share of the web tier's readiness probes that succeeded in the last 24 hours (10 needed).",
               _availability),
        Metric("controls", "Decisions held by controls (5 min)", "",
               "Decisions held by a pre-trade control in the last 5 minutes, plus 1 while a halting control "
               "keeps the tenant halted.", _controls),
        Metric("decisions_1h", "Decisions in the last hour", "",
               "Decisions made in the last hour (no data until the tenant made its first).", _decisions_1h),
        Metric("confidence_1h", "Mean BUY/SELL confidence (1 h)", "%",
               "Mean confidence of the last hour's BUY and SELL decisions.", _confidence_1h),
        Metric("model_accuracy", "Weakest production model accuracy", "%",
               "Lowest live accuracy among the production versions, last 200 outcomes each (30 needed).",
               _model_accuracy),
        Metric("pnl_today", "Paper P&L today", "",
               "The paper ledger's P&L since the start of the UTC day (realised and unrealised).", _pnl_today),
        Metric("drawdown", "Paper drawdown", "%",
               "The paper ledger's drawdown from its peak equity (what max_drawdown_pct halts on).", _drawdown),
        Metric("drift_psi", "Largest production drift (PSI)", "",
               "Largest population stability index in the production versions' latest drift checks "
               "(> 0.25 is significant).", _drift_psi),
        Metric("circuits_open", "Model circuits open", "",
               "Aliased model versions whose circuit breaker is open or half-open.", _circuits_open),
        Metric("training_failed_24h", "Training jobs failed (24 h)", "",
               "Training jobs that failed in the last 24 hours.", _training_failed_24h),
        Metric("ws_connections", "WebSocket connections", "",
               "Open WebSocket connections of the tenant (all processes).", _ws_connections),
        Metric("kill_switch", "Kill switch engaged", "",
               "1 while the tenant's or the platform's kill switch is engaged, else 0.", _kill_switch),
    )
}  # fmt: skip


def metric_values(names: Iterable[str] | None = None, *, now: dt.datetime | None = None) -> dict[str, float | None]:
    """The current value of each named metric (all by default) for the current tenant. A metric that
    fails (e.g. Redis unreachable) is logged and has no value: it is not judged this time."""
    ctx = Context(now=now or timezone.now())
    out: dict[str, float | None] = {}
    for name in names if names is not None else METRICS:
        metric = METRICS.get(name)
        if metric is None:
            out[name] = None
            continue
        try:
            value = metric.compute(ctx)
        except DatabaseError:
            raise  # the transaction is broken: the evaluation fails as a whole (and retries next minute)
        except Exception as exc:  # noqa: BLE001 - one broken source (Redis) must not stop the other rules
            log.warning("metric %s not computed in %s: %s", name, connection.schema_name, exc)
            value = None
        out[name] = None if value is None else float(value)
    return out
