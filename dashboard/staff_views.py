"""Platform staff's pages (``is_staff``; tenants' members get 403): service health and the
multi-tenant console. Read only: no form here changes a tenant, and there is no way to act as one
(no impersonation). Opening a tenant's detail is recorded in that tenant's audit trail
(``staff.tenant_viewed``, the staff member by pseudonym)."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_safe

from ops import health, selectors
from tenants.models import Plan, Tenant

from .access import staff_page
from .paging import Choice, ListSpec, Search
from .views import _is_htmx

# the console's health column reuses a report this old (the health page itself wants one of 2 s)
CONSOLE_HEALTH_AGE_S = 15.0
LABELS = {
    "postgres": "PostgreSQL",
    "redis": "Redis",
    "celery": "Celery workers",
    "queues": "Queue depth",
    "streams": "Stream consumer lag",
    "channel_layer": "Channel layer",
    "websockets": "WebSocket connections",
    "error_rate": "API error rate",
    "latency_p99": "API latency p99",
    "availability": "Availability (24 h)",
    "tenants": "Tenants",
}


FIGURE_LABELS = {
    "latency_ms": "round trip",
    "connections_used": "of max_connections",
    "memory_used_bytes": "memory",
    "memory_used": "of memory",
    "clients_used": "of maxclients",
    "max_backlog": "deepest backlog",
    "max_share_of_cap": "fullest tenant, of its cap",
    "latency_p99_ms": "p99",
    "round_trip_ms": "round trip",
}


def _label(name: str) -> str:
    if name in FIGURE_LABELS:
        return FIGURE_LABELS[name]
    for prefix, label in (("depth_", "waiting on "), ("consumers_", "consuming ")):
        if name.startswith(prefix):
            return label + name.removeprefix(prefix)
    return name.replace("_", " ")


def _text(value, unit: str) -> str:
    if value is None:
        return "no data"
    if unit.startswith("share"):
        return f"{value:.2%}"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "bytes":
        return f"{value / 1024 / 1024:,.1f} MB"
    return f"{value:,} {unit}".strip()


def _bounds(t: dict) -> str:
    """``warn > 10.00 ms, critical > 20.00 ms`` (``>=`` where reaching the bound counts)."""
    if t["warn"] is None:
        return ""
    sign = (">" if t["comparison"] == "above" else "<") + ("=" if t.get("inclusive") else "")
    return f"warn {sign} {_text(t['warn'], t['unit'])}, critical {sign} {_text(t['critical'], t['unit'])}"


def _health_context(report: dict) -> dict:
    checks = []
    for name, c in report["checks"].items():
        figures = [
            {"name": fname, "label": _label(fname), "text": _text(f["value"], f["unit"]),
             # a figure without data is shown as such, not as ok
             "status": f["status"] if f["value"] is not None else "none", "bounds": _bounds(f),
             "judged": f["warn"] is not None}
            for fname, f in c["figures"].items()
        ]  # fmt: skip
        checks.append({"name": name, "label": LABELS.get(name, name), **c, "figure_rows": figures})
    tenants = [
        {**t, "error_rate_text": _text(t["error_rate"]["value"], "share"),
         "backlog_text": _text(t["stream_backlog"]["value"], "entries")}
        for t in report["tenants"]
    ]  # fmt: skip
    thresholds = [{"name": name, **t, "text": _bounds(t)} for name, t in report["thresholds"].items()]
    generated = report["generated_at"][:19].replace("T", " ")
    return {"report": report, "checks": checks, "tenants": tenants, "thresholds": thresholds, "generated": generated}


@staff_page
def staff_health(request):
    fresh = request.GET.get("fresh") == "1"
    report = health.services_health(max_age_s=0 if fresh else health.CACHE_S)
    template = "dashboard/_staff_health_panel.html" if _is_htmx(request) else "dashboard/staff_health.html"
    return render(request, template, _health_context(report))


def _tenant_list_spec(health_of: dict[str, dict]) -> ListSpec:
    def by_health(rows, value):
        return rows.filter(slug__in=[slug for slug, row in health_of.items() if row["status"] == value])

    return ListSpec(
        "tenants",
        "tenants",
        search=Search(("slug", "name", "member_emails"), "Search", "slug, name or a member's e-mail"),
        filters=(
            Choice("plan", "Plan", [(p, p) for p in Plan.objects.order_by("price").values_list("code", flat=True)],
                   field="plan__code"),
            Choice("status", "Status", [(s, s) for s in (Tenant.Status.ACTIVE, Tenant.Status.SUSPENDED)]),
            Choice("health", "Health", [(h, h) for h in health.TENANT_STATUSES], apply=by_health),
        ),
        per_page=selectors.CONSOLE_PAGE,
    )  # fmt: skip


@staff_page
def staff_tenants(request):
    """Every tenant: plan, status, health (the service-health report's), usage this month and last
    activity; search, filters and pages as every dashboard list (dashboard/paging.py)."""
    report = health.services_health(max_age_s=CONSOLE_HEALTH_AGE_S)
    health_of = {row["tenant"]: row for row in report["tenants"]}
    tenants = _tenant_list_spec(health_of).apply(request, selectors.tenant_console_list())
    activity = selectors.tenant_activity(tenants=tenants.rows)
    rows = [{"t": t, "health": health_of.get(t.slug), **activity[t.schema_name]} for t in tenants.rows]
    return render(request, "dashboard/staff_tenants.html", {"tenants": tenants, "rows": rows})


@require_safe
@staff_page
def staff_tenant(request, slug: str):
    from django_tenants.utils import schema_context

    from compliance.services import audit_record
    from tenants.models import KillSwitch

    tenant = Tenant.objects.exclude(status=Tenant.Status.TEMPLATE).select_related("plan").filter(slug=slug).first()
    if tenant is None:
        raise Http404("No such tenant.")
    with schema_context(tenant.schema_name):
        # recorded before anything is shown: no unaudited look at a tenant's data
        audit_record(request.user, "staff.tenant_viewed", tenant, {"page": "staff console"})
        detail = selectors.tenant_detail(tenant=tenant)
    for q in detail["quotas"]:
        q["text"] = f"{q['used']:,}" + (f" of {q['limit']:,} ({q['share']:.1%})" if q["limit"] else " (unlimited)")
    report = health.services_health(max_age_s=CONSOLE_HEALTH_AGE_S)
    context = {
        "tenant": tenant,
        "detail": detail,
        "health": next((row for row in report["tenants"] if row["tenant"] == tenant.slug), None),
        "tenant_kill_switch": KillSwitch.objects.filter(tenant=tenant, lifted_at=None).first(),
        "activity": selectors.tenant_activity(tenants=[tenant])[tenant.schema_name],
    }
    return render(request, "dashboard/staff_tenant.html", context)
