"""Prometheus metrics, served at ``GET /metrics`` (ops/views.py; docs/observability.md "Metrics").

Two kinds of figure:

- **counted where it happens**, in whichever process: HTTP requests (:class:`MetricsMiddleware`),
  decisions (REST ``decision_make`` and the stream), stream batches, Celery task durations (the
  ``task_prerun``/``task_postrun`` signals), WebSocket sockets open (the edge and daphne) and limit
  rejections. Every process writes them to its own files under ``PROMETHEUS_MULTIPROC_DIR``
  (prometheus_client's multiprocess mode), so ``/metrics`` from any gunicorn worker sums them all.
- **read at scrape time** (:class:`ScrapeCollector`) from where they already live, with
  :mod:`ops.health`'s readers: Celery queue depths, event-stream consumer backlog, WebSocket
  connection slots, and the deployed models' live accuracy. Kept ``METRICS_COLLECT_CACHE_S`` per
  process; a source that cannot be read gives ``ati_metrics_source_up{source} 0``, never a 500.

Labels are bounded: a route is the resolved URL's view name (never the raw path), a status its
class (``2xx``), a method one of the HTTP verbs, a task its registered name, a plan its code (a
handful). Counted figures never carry a tenant (every process would keep a series per tenant,
route and bucket); scrape-time figures name at most ``METRICS_TENANT_CAP`` tenants, the largest by
that figure, and sum the rest as ``tenant="other"``.
"""

from __future__ import annotations

import atexit
import hmac
import logging
import os
import sys
import threading
import time
from pathlib import Path

from django.conf import settings


def _multiproc_dir() -> str:
    """The directory every process writes to (set in the environment before prometheus_client
    is imported: it picks its value store then); empty for single-process mode."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path is None:
        path = getattr(settings, "PROMETHEUS_MULTIPROC_DIR", "") or ""
        if path:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
    return path


_IMPORTED_BEFORE = "prometheus_client" in sys.modules
MULTIPROC_DIR = _multiproc_dir()

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest  # noqa: E402
from prometheus_client import multiprocess as _multiprocess  # noqa: E402
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.exposition import CONTENT_TYPE_LATEST  # noqa: E402

log = logging.getLogger(__name__)
if _IMPORTED_BEFORE and MULTIPROC_DIR:
    log.warning("prometheus_client was imported before ops.metrics: this process may not share its figures")

CONTENT_TYPE = CONTENT_TYPE_LATEST
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DECISION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TASK_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LIVE_WINDOW = 200  # a model's live accuracy over its last resolved calls (as ensemble-status)

# every metric has a label: an unlabelled one would create its file in every process at import
HTTP_LATENCY = Histogram(
    "ati_http_request_duration_seconds",
    "HTTP request latency, from the first middleware to the response, by route (view name), method and status class",
    ["route", "method", "status"],
    buckets=HTTP_BUCKETS,
)
DECISION_LATENCY = Histogram(
    "ati_decision_latency_seconds",
    "Time to decide (features, predictions, agents, consensus): the decision's latency_ms, by source and plan",
    ["source", "plan"],
    buckets=DECISION_BUCKETS,
)
STREAM_BARS = Counter("ati_stream_bars", "Bars processed by the decision stream", ["plan"])
STREAM_DECISIONS = Counter("ati_stream_decisions", "Decisions made by the decision stream", ["plan"])
STREAM_BATCH = Histogram(
    "ati_stream_batch_duration_seconds",
    "One stream read batch: compute and commit",
    ["plan"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TASK_DURATION = Histogram(
    "ati_celery_task_duration_seconds",
    "Celery task run time (task_prerun to task_postrun), by task name and final state",
    ["task", "state"],
    buckets=TASK_BUCKETS,
)
WS_OPEN = Gauge(
    "ati_websocket_open",
    "WebSockets open now, by server (edge: ws/decisions/; daphne: the Channels consumers)",
    ["server"],
    multiprocess_mode="livesum",
)
LIMIT_REJECTIONS = Counter(
    "ati_limit_rejections",
    "Requests refused by a limit: the per-minute rate limits (requests_tenant/_key/_user), a plan quota "
    "(<quota>, 429 or 402), a stock limit (its name), the plan's WebSocket connections, or login_lockout",
    ["limit", "plan"],
)


# --- recording (never raises: a metric must not fail what it measures) -----------------------------

_warned: set[str] = set()


def _failed(what: str, exc: Exception) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning("metrics: %s not recorded (%s)", what, exc)


def plan_of(tenant) -> str:
    plan = getattr(tenant, "plan", None)
    return getattr(plan, "code", None) or "none"


def decision_observed(*, source: str, tenant, latency_ms: float) -> None:
    try:
        DECISION_LATENCY.labels(source, plan_of(tenant)).observe(latency_ms / 1000)
    except Exception as exc:  # noqa: BLE001
        _failed("decision latency", exc)


def stream_batch(*, tenant, bars: int, latencies_ms: list[float], seconds: float) -> None:
    """One committed stream batch: its bars, its decisions' latencies and its duration."""
    try:
        plan = plan_of(tenant)
        STREAM_BARS.labels(plan).inc(bars)
        STREAM_DECISIONS.labels(plan).inc(len(latencies_ms))
        STREAM_BATCH.labels(plan).observe(seconds)
        child = DECISION_LATENCY.labels("stream", plan)
        for ms in latencies_ms:
            child.observe(ms / 1000)
    except Exception as exc:  # noqa: BLE001
        _failed("stream batch", exc)


def limit_rejected(limit: str, tenant) -> None:
    try:
        LIMIT_REJECTIONS.labels(limit, plan_of(tenant)).inc()
    except Exception as exc:  # noqa: BLE001
        _failed("limit rejection", exc)


_ws_atexit = []


def ws_opened(server: str) -> None:
    WS_OPEN.labels(server).inc()
    if MULTIPROC_DIR and not _ws_atexit:  # a live gauge: this process's files go when it ends
        _ws_atexit.append(atexit.register(process_dead))


def ws_closed(server: str) -> None:
    WS_OPEN.labels(server).dec()


def process_dead(pid: int | None = None) -> None:
    """Drop a finished process's live gauges (gunicorn's ``child_exit``, Celery's child shutdown)."""
    if MULTIPROC_DIR:
        _multiprocess.mark_process_dead(pid or os.getpid())


class WebSocketMetrics:
    """ASGI middleware (daphne): counts the WebSockets open in this process, from the accept to
    the end of the connection."""

    def __init__(self, app, server: str = "daphne"):
        self.app = app
        self.server = server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        accepted = False

        async def counting_send(message):
            nonlocal accepted
            if message.get("type") == "websocket.accept" and not accepted:
                accepted = True
                ws_opened(self.server)
            await send(message)

        try:
            return await self.app(scope, receive, counting_send)
        finally:
            if accepted:
                ws_closed(self.server)


# --- HTTP ---------------------------------------------------------------------------------------


def route_of(request, status: int) -> str:
    """The resolved URL's view name (``decision-detail``, never ``/api/v1/decisions/42/``).
    A response made before routing (401, 429 in middleware) is resolved here; nothing resolves:
    ``unmatched``."""
    match = getattr(request, "resolver_match", None)
    if match is None and status != 404:
        from django.urls import Resolver404, resolve

        try:
            match = resolve(request.path_info, urlconf=getattr(request, "urlconf", None))
        except (Resolver404, Exception):  # noqa: BLE001
            match = None
    if match is None:
        return "unmatched"
    return match.view_name or match.route or "unnamed"


class MetricsMiddleware:
    """The first middleware: every request's latency by route, method and status class."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        try:
            status = response.status_code
            method = request.method if request.method in METHODS else "other"
            HTTP_LATENCY.labels(route_of(request, status), method, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )
        except Exception as exc:  # noqa: BLE001
            _failed("request latency", exc)
        return response


# --- Celery -------------------------------------------------------------------------------------

_task_started: dict[str, float] = {}


def _task_prerun(task_id=None, **_):
    if task_id is not None:
        _task_started[task_id] = time.perf_counter()


def _task_postrun(task_id=None, task=None, state=None, **_):
    started = _task_started.pop(task_id, None)
    if started is None or task is None:
        return
    try:
        TASK_DURATION.labels(task.name, state or "UNKNOWN").observe(time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001
        _failed("task duration", exc)


def _worker_process_shutdown(**_):
    process_dead()


def connect_signals() -> None:
    from celery.signals import task_postrun, task_prerun, worker_process_shutdown

    task_prerun.connect(_task_prerun, weak=False, dispatch_uid="ops.metrics.task_prerun")
    task_postrun.connect(_task_postrun, weak=False, dispatch_uid="ops.metrics.task_postrun")
    worker_process_shutdown.connect(_worker_process_shutdown, weak=False, dispatch_uid="ops.metrics.shutdown")


# --- read at scrape time ------------------------------------------------------------------------

OTHER = "other"


def _top(weights: dict[str, float], cap: int) -> set[str]:
    """The ``cap`` tenants with the largest weight (ties by name): they keep their own label."""
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
    return {name for name, _ in ranked[: max(cap, 0)]}


def _tenants() -> list[tuple[str, str, str]]:
    from tenants.models import Tenant

    return list(
        Tenant.objects.filter(status=Tenant.Status.ACTIVE)
        .order_by("slug")
        .values_list("schema_name", "slug", "plan__code")
    )


def _queue_families() -> list:
    from . import health

    side = health._queue_depths()
    depth = GaugeMetricFamily("ati_celery_queue_depth", "Tasks waiting on each Celery queue", labels=["queue"])
    for queue, n in sorted(side["depths"].items()):
        depth.add_metric([queue], n)
    unacked = GaugeMetricFamily("ati_celery_unacked_tasks", "Tasks taken by a worker and not yet acknowledged")
    unacked.add_metric([], side["unacked"])
    return [depth, unacked]


def _stream_families(schemas: list[str], slug: dict[str, str], cap: int) -> list:
    from . import health

    rows = [r for r in health._stream_groups(schemas) if r["backlog"] is not None]
    weights: dict[str, float] = {}
    for r in rows:
        weights[r["schema"]] = max(weights.get(r["schema"], 0), r["backlog"])
    named = _top(weights, cap)
    values: dict[tuple[str, str, str], int] = {}
    for r in rows:
        tenant = slug.get(r["schema"], r["schema"]) if r["schema"] in named else OTHER
        key = (tenant, r["event"], r["group"])
        values[key] = values.get(key, 0) + r["backlog"]
    family = GaugeMetricFamily(
        "ati_stream_backlog_entries",
        "Event-stream entries a consumer group has not read or not acknowledged (lag + pending)",
        labels=["tenant", "event", "group"],
    )
    for key in sorted(values):
        family.add_metric(list(key), values[key])
    return [family]


def _ws_families(schemas: list[str], slug: dict[str, str], plan: dict[str, str], cap: int) -> list:
    from . import health

    counts = health._ws_counts(health.redis_client(health._db("REDIS_DB_USAGE")), schemas)
    named = _top({s: n for s, n in counts.items() if n}, cap)
    values: dict[tuple[str, str], int] = {}
    for schema, n in counts.items():
        if not n:
            continue
        key = (slug[schema] if schema in named else OTHER, plan[schema])
        values[key] = values.get(key, 0) + n
    family = GaugeMetricFamily(
        "ati_websocket_connections",
        "Decision-feed sockets held against each tenant's plan cap (connection slots, every edge process)",
        labels=["tenant", "plan"],
    )
    for key in sorted(values):
        family.add_metric(list(key), values[key])
    return [family]


def _model_rows(schemas: list[str]) -> list[tuple]:
    """(schema, model, alias, calls, correct) of every production/challenger version: its last
    LIVE_WINDOW resolved calls, one UNION ALL query over the schemas."""
    from intelligence.models import Decision
    from models_registry.models import ModelAlias, ModelVersion, RegisteredModel

    from .health import per_schema

    sql = (
        f"SELECT %s, m.name, a.name, count(w.c), count(*) FILTER (WHERE w.c) "
        f"FROM {{schema}}.{ModelAlias._meta.db_table} a "
        f"JOIN {{schema}}.{RegisteredModel._meta.db_table} m ON m.id = a.model_id "
        f"JOIN {{schema}}.{ModelVersion._meta.db_table} v ON v.id = a.version_id "
        f"LEFT JOIN LATERAL (SELECT d.model_correct AS c FROM {{schema}}.{Decision._meta.db_table} d "
        f"WHERE d.model_version = m.name || '@' || v.version AND d.model_correct IS NOT NULL "
        f"ORDER BY d.id DESC LIMIT %s) w ON true "
        f"WHERE a.name IN ('production', 'challenger') GROUP BY m.name, a.name"
    )
    return per_schema(sql, schemas, [LIVE_WINDOW])


def _model_families(schemas: list[str], slug: dict[str, str], cap: int) -> list:
    rows = _model_rows(schemas)
    weights: dict[str, float] = {}
    for schema, _model, _alias, n, _hits in rows:
        weights[schema] = weights.get(schema, 0) + n
    named = _top(weights, cap)
    values: dict[tuple[str, str, str], list[int]] = {}
    for schema, model, alias, n, hits in rows:
        key = (slug[schema], model, alias) if schema in named else (OTHER, OTHER, alias)
        acc = values.setdefault(key, [0, 0])
        acc[0] += int(n)
        acc[1] += int(hits)
    accuracy = GaugeMetricFamily(
        "ati_model_live_accuracy",
        f"Share of a deployed model version's last {LIVE_WINDOW} resolved directional calls that were right "
        "(absent until it has one)",
        labels=["tenant", "model", "alias"],
    )
    calls = GaugeMetricFamily(
        "ati_model_live_calls",
        f"Resolved calls behind ati_model_live_accuracy (at most {LIVE_WINDOW} per version)",
        labels=["tenant", "model", "alias"],
    )
    for key in sorted(values):
        n, hits = values[key]
        calls.add_metric(list(key), n)
        if n:
            accuracy.add_metric(list(key), hits / n)
    return [accuracy, calls]


def _scrape() -> list:
    started = time.perf_counter()
    cap = settings.METRICS_TENANT_CAP
    up = GaugeMetricFamily(
        "ati_metrics_source_up", "1 when the scrape-time source could be read, else 0", labels=["source"]
    )
    families: list = []
    try:
        tenants = _tenants()
        up.add_metric(["tenants"], 1)
    except Exception as exc:  # noqa: BLE001
        _failed("tenants", exc)
        tenants = []
        up.add_metric(["tenants"], 0)
    schemas = [t[0] for t in tenants]
    slug = {t[0]: t[1] for t in tenants}
    plan = {t[0]: t[2] or "none" for t in tenants}
    active = GaugeMetricFamily("ati_tenants_active", "Active tenants by plan", labels=["plan"])
    by_plan: dict[str, int] = {}
    for p in plan.values():
        by_plan[p] = by_plan.get(p, 0) + 1
    for p in sorted(by_plan):
        active.add_metric([p], by_plan[p])
    families.append(active)
    for source, read in (
        ("queues", _queue_families),
        ("streams", lambda: _stream_families(schemas, slug, cap)),
        ("websockets", lambda: _ws_families(schemas, slug, plan, cap)),
        ("models", lambda: _model_families(schemas, slug, cap)),
    ):
        try:
            families += read()
            up.add_metric([source], 1)
        except Exception as exc:  # noqa: BLE001 - one source unread, the others still reported
            _failed(source, exc)
            up.add_metric([source], 0)
    took = GaugeMetricFamily("ati_metrics_collect_seconds", "Time the scrape-time sources took to read")
    took.add_metric([], time.perf_counter() - started)
    return [*families, up, took]


_cache: dict = {"at": float("-inf"), "families": []}
_cache_lock = threading.Lock()


def reset_cache() -> None:
    with _cache_lock:
        _cache.update(at=float("-inf"), families=[])


class ScrapeCollector:
    """The figures read at scrape time (see the module's docstring), cached per process."""

    def collect(self):
        with _cache_lock:
            if time.monotonic() - _cache["at"] >= settings.METRICS_COLLECT_CACHE_S:
                _cache.update(families=_scrape(), at=time.monotonic())
            families = _cache["families"]
        yield from families


_scrape_registry = CollectorRegistry(auto_describe=False)
_scrape_registry.register(ScrapeCollector())


def render() -> bytes:
    """The exposition: every process's counted figures (or this process's, single-process) and
    the scrape-time ones."""
    if MULTIPROC_DIR:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return generate_latest(registry) + generate_latest(_scrape_registry)


# --- who may scrape -----------------------------------------------------------------------------

LOOPBACK = frozenset({"127.0.0.1", "::1"})


def scraper(request) -> tuple[str | None, str]:
    """(who: ``token`` / ``staff`` / ``loopback``, or None; the refusal's code). A bearer token is
    judged alone: a wrong one is refused even from a staff session or loopback."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        token = settings.METRICS_TOKEN
        if token and hmac.compare_digest(credential.strip().encode(), token.encode()):
            return "token", ""
        return None, "invalid_metrics_token"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return "staff", ""
    if (
        settings.METRICS_ALLOW_LOOPBACK
        and request.META.get("REMOTE_ADDR") in LOOPBACK
        and not any(h in request.headers for h in ("X-Forwarded-For", "Forwarded", "X-Real-IP"))
    ):
        return "loopback", ""
    return None, "permission_denied"
