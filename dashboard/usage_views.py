"""The dashboard's Usage page: quotas with their forecast, billable units over time, requests
per endpoint (error rate, latency p50/p99, rate-limited), per API key. Reads analytics' rollups."""

from __future__ import annotations

from django.shortcuts import render

from .access import tenant_page
from .paging import Choice, ListSpec, Search

UNIT_LABELS = {
    "request": "API requests",
    "decision": "Decisions",
    "prediction": "Model predictions",
    "training_trial": "Training trials",
    "backtest_bar": "Backtest bars",
}


ENDPOINT_LIST = ListSpec(
    "endpoints",
    "endpoints",
    search=Search(("endpoint",), "Endpoint", "e.g. decisions"),
    filters=(
        Choice("errors", "Answers", (("server", "With server errors"), ("client", "With client errors"),
                                     ("limited", "Rate-limited")),
               apply=lambda rows, v: [r for r in rows if _has(r, v)]),
    ),
)  # fmt: skip


def _has(row: dict, kind: str) -> bool:
    if kind == "limited":
        return bool(row.get("rate_limited"))
    return bool(row.get("error_rate" if kind == "server" else "client_error_rate"))


@tenant_page()
def usage(request):
    from analytics.selectors import usage_report
    from tenants.models import ApiKey

    try:
        days = max(1, min(90, int(request.GET.get("days", 30))))
    except ValueError:
        days = 30
    report = usage_report(tenant=request.tenant, days=days)
    names = dict(ApiKey.objects.filter(tenant=request.tenant).values_list("id", "name"))
    charts = [
        {"unit": unit, "label": UNIT_LABELS.get(unit, unit), "total": report["totals"].get(unit, 0),
         **_bars(points)}
        for unit, points in sorted(report["units"].items(), key=lambda kv: list(UNIT_LABELS).index(kv[0])
                                   if kv[0] in UNIT_LABELS else 99)
    ]  # fmt: skip
    context = {
        "days": days,
        "report": report,
        "quotas": [
            {
                **q,
                "percent": None if q["share"] is None else min(100, round(q["share"] * 100, 1)),
                "label": q["quota"].replace("_", " "),
            }
            for q in report["quotas"]
        ],  # fmt: skip
        "charts": charts,
        "endpoints": ENDPOINT_LIST.apply(request, report["endpoints"]),
        "keys": [{**k, "name": names.get(k["api_key_id"], f"key #{k['api_key_id']}")} for k in report["api_keys"]],
        "plan": request.tenant.plan,
    }
    return render(request, "dashboard/usage.html", context)


def _bars(points: list[dict], width: int = 560, height: int = 120) -> dict:
    """Daily counts as SVG bars (each bar's title says its day and count)."""
    if not points:
        return {"bars": [], "width": width, "height": height, "peak": 0}
    peak = max(p["count"] for p in points) or 1
    step = width / len(points)
    bars = [
        {"x": round(i * step + 1, 1), "w": round(max(step - 2, 1), 1),
         "h": round(p["count"] / peak * (height - 16), 1), "y": round(height - p["count"] / peak * (height - 16), 1),
         "t": p["t"], "count": p["count"]}
        for i, p in enumerate(points)
    ]  # fmt: skip
    return {"bars": bars, "width": width, "height": height, "peak": peak}


@tenant_page()
def performance(request):
    """Live performance: accuracy (consensus, models, agents) with verdicts, paper equity and
    drawdown, latency, calibration, stream throughput."""
    from analytics import services
    from analytics.selectors import performance_report

    from .backtests_views import _equity_chart

    try:
        days = max(1, min(730, int(request.GET.get("days", 90))))
    except ValueError:
        days = 90
    services.performance_refresh()
    report = performance_report(days=days)
    c = report["consensus"]
    chart = None
    if c and len(c["series"]) >= 2:
        chart = _equity_chart([[s["day"], s["equity"], s["drawdown"] * 100] for s in c["series"]])
    context = {
        "days": days,
        "report": report,
        "c": c,
        "chart": chart,
        "accuracy_chart": _accuracy_lines(report),
    }
    return render(request, "dashboard/performance.html", context)


def _accuracy_lines(report: dict, width: int = 720, height: int = 200) -> dict | None:
    """Daily accuracy of the consensus and each model version as lines on 0-100 %, with the 50 % coin line."""
    c = report.get("consensus")
    if not c or len(c["series"]) < 2:
        return None
    days = [s["day"] for s in c["series"]]
    index = {d: i for i, d in enumerate(days)}
    colours = ("#2f5bea", "#c92a2a", "#2b8a3e", "#e67700", "#7048e8")
    named = [("consensus", c["series"])] + [(m["name"], m["series"]) for m in report["models"]]
    lines = []
    for k, (name, series) in enumerate(named):
        pts = [
            f"{round(5 + index[s['day']] / (len(days) - 1) * (width - 10), 1)},"
            f"{round(height - 5 - s['accuracy'] * (height - 10), 1)}"
            for s in series
            if s["accuracy"] is not None and s["day"] in index
        ]
        if pts:
            lines.append({"name": name, "points": " ".join(pts), "color": colours[k % len(colours)]})
    return {"lines": lines, "width": width, "height": height, "coin": round(height - 5 - 0.5 * (height - 10), 1)}
