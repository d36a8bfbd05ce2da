"""The dashboard's Backtests area: request a backtest, watch it run, read its stats next to buy
& hold, its equity and drawdown curves and its trades. Rules live in backtesting's services."""

from __future__ import annotations

from django.db.models import Q
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse

from api.errors import ApplicationError, NotFound
from models_registry.models import JobState
from tenants.models import Role

from .access import can, start_form, tenant_page
from .forms import BacktestForm
from .paging import Choice, Dates, ListSpec, Search
from .views import _is_htmx

STATS = (
    ("Final equity", "equity_final", "money"),
    ("Return", "return_pct", "pct"),
    ("Buy & hold", "buy_and_hold_return_pct", "pct"),
    ("Annual return", "annual_return_pct", "pct"),
    ("Volatility (annual)", "volatility_annual_pct", "pct"),
    ("Sharpe", "sharpe", "ratio"),
    ("Sortino", "sortino", "ratio"),
    ("Calmar", "calmar", "ratio"),
    ("Max drawdown", "max_drawdown_pct", "pct"),
    ("Longest drawdown", "max_drawdown_duration", "text"),
    ("Trades", "trades", "int"),
    ("Win rate", "win_rate_pct", "pct"),
    ("Profit factor", "profit_factor", "ratio"),
    ("Expectancy", "expectancy", "money"),
    ("Average trade", "avg_trade_pct", "pct"),
    ("Best trade", "best_trade_pct", "pct"),
    ("Worst trade", "worst_trade_pct", "pct"),
    ("SQN", "sqn", "ratio"),
    ("Exposure", "exposure_pct", "pct"),
    ("Commissions", "commissions", "money"),
)


def _run_list_spec() -> ListSpec:
    from backtesting.strategies import STRATEGIES

    strategies = [(s.name, s.title) for s in STRATEGIES.values()]
    strategies += [("model", "A model version"), ("consensus", "The live consensus")]
    return ListSpec(
        "backtests",
        "backtests",
        search=Search(("symbol", "strategy", "name"), "Symbol or strategy", "e.g. BTC-USD"),
        filters=(
            Choice("state", "State", JobState.choices),
            Choice("strategy", "Strategy", strategies),
            Dates("created_at", "Started"),
        ),
    )


@tenant_page()
def backtests(request):
    from backtesting import selectors, services
    from marketdata import selectors as md

    form = BacktestForm(request.POST or None)

    def start(d):
        broker = {"cash": d["cash"], "commission": d["commission"] / 100, "fill": d["fill"]}
        if d["stop_loss"]:
            broker["stop_loss"] = d["stop_loss"] / 100
        params, strategy = d["params"], d["strategy"]
        if strategy == services.MODEL:
            params = {"model": d["model"], "window": d["window"] or 500, "step": d["step"] or 100, **params}
        elif strategy == services.CONSENSUS:
            params = {}
        elif strategy == "replay":
            params, strategy = {"replay": True}, services.CONSENSUS
        run = services.backtest_create(
            tenant=request.tenant, actor=request.user, strategy=strategy, symbol=d["symbol"],
            timeframe=d["timeframe"], params=params, broker=broker, grid=d["grid"], metric=d["metric"] or "sharpe",
        )  # fmt: skip
        return run, f"Backtest of {run.strategy} on {run.symbol} started.", reverse("dashboard:backtest", args=[run.pk])

    response, status = start_form(request, form, start)
    if response is not None:
        return response
    context = {
        "runs": _run_list_spec().apply(request, selectors.run_list().order_by("-created_at")),
        "form": form,
        "instruments": list(md.instrument_list()),
        "can_run": can(request, Role.ANALYST),
    }
    return render(request, "dashboard/backtests.html", context, status=status)


def _trade_reasons():
    from backtesting.engine import REASONS

    return [(r, r.replace("_", " ")) for r in REASONS.values()]


TRADE_LIST = ListSpec(
    "trades",
    "trades",
    search=Search(("reason",), "Exit reason", "e.g. stop"),
    filters=(
        Choice.either("result", "Result", ("won", "Won"), ("lost", "Lost"), Q(pnl__gt=0)),
        Choice.either("side", "Side", ("long", "Long"), ("short", "Short"), Q(size__gt=0)),
        Choice("reason", "Exit by", _trade_reasons()),
        Dates("entry_time", "Entered"),
    ),
    per_page=50,
)  # fmt: skip


@tenant_page()
def backtest_detail(request, run_id):
    from backtesting import selectors

    try:
        run = selectors.run_get(run_id=run_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    sweep = run.stats if run.grid is not None and run.stats else None
    context = {
        "run": run,
        "sweep": sweep,
        "heatmap": _heatmap_rows(sweep["heatmap"]) if sweep and sweep.get("heatmap") else None,
        "ranking": [
            {
                "params": ", ".join(f"{k}={v}" for k, v in r["params"].items()),
                "value": r.get(run.metric),
                "return_pct": r["return_pct"],
                "trades": r["trades"],
            }
            for r in (sweep or {}).get("ranking", [])[:20]
        ],  # fmt: skip
        "stats": [] if run.grid is not None else _stats_rows(run.stats),
        "chart": _equity_chart(run.equity),
        "commission_pct": f"{(run.broker or {}).get('commission', 0.0) * 100:.6g}",
        "fill_label": "the signal bar's close" if (run.broker or {}).get("fill") == "close" else "the next bar's open",
    }
    if run.state == "succeeded":
        context["trades"] = TRADE_LIST.apply(request, run.trades.order_by("n"))
    template = "dashboard/_backtest_panel.html" if _is_htmx(request) else "dashboard/backtest.html"
    return render(request, template, context)


COLORS = ("#2f5bea", "#c92a2a", "#2b8a3e", "#e67700", "#7048e8", "#0c8599", "#862e9c", "#5c940d", "#d6336c", "#495057")


@tenant_page()
def backtests_compare(request):
    """Finished runs side by side: the key figures (the best of each marked) and their equity
    curves as returns on one chart."""
    import uuid

    from backtesting import selectors, services

    raw = request.GET.getlist("ids")
    context: dict = {"runs": [], "rows": [], "chart": None, "error": None}
    try:
        ids = list(dict.fromkeys(uuid.UUID(x) for x in raw))
    except ValueError:
        ids = []
    if not 2 <= len(ids) <= 10:
        context["error"] = "Tick 2 to 10 finished backtests on the Backtests page, then Compare."
        return render(request, "dashboard/backtests_compare.html", context, status=400)
    try:
        runs = [selectors.run_get(run_id=i) for i in ids]
    except NotFound as exc:
        raise Http404(exc.message) from exc
    try:
        compared = services.backtest_compare(runs=runs)
    except ApplicationError as exc:
        context["error"] = exc.message
        return render(request, "dashboard/backtests_compare.html", context, status=400)
    labels = {key: (label, kind) for label, key, kind in STATS}
    context["runs"] = [
        {**row, "color": COLORS[i % len(COLORS)], "label": f"{row['strategy']} {row['symbol']} {row['timeframe']}",
         "params_text": ", ".join(f"{k}={v}" for k, v in row["params"].items())}
        for i, row in enumerate(compared["runs"])
    ]  # fmt: skip
    context["rows"] = [
        {
            "label": labels.get(key, (key, "ratio"))[0], "kind": labels.get(key, (key, "ratio"))[1], "key": key,
            "cells": [{"value": r[key], "best": compared["best"].get(key) == r["id"]} for r in compared["runs"]],
        }
        for key in services.COMPARED
    ]  # fmt: skip
    context["chart"] = _returns_chart([(r, run.equity) for r, run in zip(context["runs"], runs, strict=True)])
    return render(request, "dashboard/backtests_compare.html", context)


def _returns_chart(series: list[tuple[dict, list]], width: int = 720, height: int = 240) -> dict | None:
    """Each run's equity as % return from its start, on one time axis (runs may cover different bars)."""
    import datetime as dt

    curves = []
    for run, points in series:
        if len(points) < 2:
            continue
        base = points[0][1] or 1.0
        curves.append((run, [(dt.datetime.fromisoformat(t).timestamp(), (v / base - 1) * 100) for t, v, _ in points]))
    if not curves:
        return None
    t0 = min(p[0][0] for _, p in curves)
    t1 = max(p[-1][0] for _, p in curves)
    lo = min(min(v for _, v in p) for _, p in curves)
    hi = max(max(v for _, v in p) for _, p in curves)
    tspan, vspan = (t1 - t0) or 1.0, (hi - lo) or 1.0
    lines = []
    for run, pts in curves:
        xy = " ".join(
            f"{round(5 + (t - t0) / tspan * (width - 10), 1)},{round(height - 5 - (v - lo) / vspan * (height - 10), 1)}"
            for t, v in pts
        )
        lines.append({"points": xy, "color": run["color"], "label": run["label"]})
    zero = round(height - 5 - (0 - lo) / vspan * (height - 10), 1) if lo <= 0 <= hi else None
    return {"lines": lines, "width": width, "height": height, "lo": lo, "hi": hi, "zero": zero}


def _stats_rows(stats: dict | None) -> list[dict]:
    if not stats:
        return []
    return [{"label": label, "value": stats.get(key), "kind": kind, "key": key} for label, key, kind in STATS]


def _equity_chart(points: list, width: int = 720, height: int = 220) -> dict | None:
    """Equity (top two thirds) and drawdown (bottom third) as SVG polylines."""
    if len(points) < 2:
        return None
    values = [p[1] for p in points]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    worst = min(p[2] for p in points) or -1.0
    top = height * 2 / 3
    n = len(points) - 1
    eq, dd = [], []
    for i, (_, value, draw) in enumerate(points):
        x = round(i / n * (width - 10) + 5, 1)
        eq.append(f"{x},{round(top - 5 - (value - lo) / span * (top - 10), 1)}")
        dd.append(f"{x},{round(top + 5 + draw / worst * (height - top - 10), 1)}")
    return {
        "equity": " ".join(eq), "drawdown": " ".join(dd), "width": width, "height": height, "top": top,
        "lo": lo, "hi": hi, "worst": worst, "start": points[0][0][:10], "end": points[-1][0][:10],
    }  # fmt: skip


def _heatmap_rows(heat: dict) -> dict:
    """The sweep's heatmap as table rows, each cell shaded by its rank between the worst and best."""
    values = [v for row in heat["values"] for v in row if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    span = (hi - lo) or 1.0
    rows = []
    for x, row in zip(heat["x_values"], heat["values"], strict=True):
        cells = [{"value": v, "shade": None if v is None else round(0.1 + 0.8 * (v - lo) / span, 2)} for v in row]
        rows.append({"x": x, "cells": cells})
    return {"x": heat["x"], "y": heat["y"], "y_values": heat["y_values"], "rows": rows}
