"""The dashboard's Decisions area: the live feed (WebSocket, resumable), a decision's vote
breakdown, the agents' weights over time, the paper positions and P&L, and the flow editor.
Every rule lives in intelligence's services and selectors; these views render and forward."""

from __future__ import annotations

import json
import math

from django.conf import settings
from django.contrib import messages
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from api.errors import ApplicationError, NotFound
from intelligence.models import Action
from tenants.models import Role

from .access import can, forbidden, tenant_page
from .forms import FlowForm
from .paging import Choice, Dates, ListSpec, Search

POSITIONS_ASIDE = 20  # positions beside the feed; the Positions page has them all


def _feed_base(request) -> str:
    """Where the browser reaches the decision feed's edge server (intelligence/edge.py)."""
    configured = settings.WS_FEED_PUBLIC_URL
    if configured:
        return configured.rstrip("/")
    host = request.get_host().split(":")[0]
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{host}:{settings.WS_FEED_PORT}"


def _ticket(request) -> str:
    from tenants.channels import ws_ticket_issue

    return ws_ticket_issue(tenant_id=request.tenant.pk, user_id=request.user.pk, key_id=None)


DECISION_LIST = ListSpec(
    "decisions",
    "decisions",
    search=Search(("symbol",), "Symbol", "e.g. BTC-USD"),
    filters=(
        Choice("action", "Action", Action.choices),
        Choice("outcome", "Outcome", (("right", "Right"), ("wrong", "Wrong"), ("open", "Not resolved yet")),
               when={"right": Q(correct=True), "wrong": Q(correct=False), "open": Q(resolved_at=None)}),
        Choice("source", "Source", (("stream", "Live stream"), ("api", "API"))),
        Dates("created_at", "Decided"),
    ),
    htmx=False,  # the first, unfiltered page is the live feed (its script binds on load)
)  # fmt: skip


@tenant_page()
def decisions(request):
    from intelligence import selectors
    from intelligence.ledger import position_state
    from intelligence.services import pipeline_load

    listed = DECISION_LIST.apply(request, selectors.decision_list(limit=None))
    recent = [selectors.decision_payload(d) for d in listed.rows]
    for d in recent:  # the same formatting the page's script gives live rows
        d["bar"] = d["ts"][:16].replace("T", " ")
        d["confidence_pct"] = f"{d['confidence'] * 100:.1f} %"
    cfg = pipeline_load(request.tenant).ledger
    positions = [{"p": p, **position_state(p, cfg)} for p in selectors.position_list()[:POSITIONS_ASIDE]]
    context = {
        "decisions": recent,
        "listed": listed,
        # new decisions stream in on the first page of the whole list; a filtered or older page stays put
        "live": not listed.active and listed.page.number == 1,
        "last_id": recent[0]["id"] if recent else 0,
        "positions": positions,
        "ws_url": f"{_feed_base(request)}/ws/decisions/",
        "ticket": _ticket(request),
    }
    return render(request, "dashboard/decisions.html", context)


@tenant_page()
def decisions_ticket(request):
    """A fresh one-use ticket for the page's WebSocket (after a disconnect)."""
    return JsonResponse({"ticket": _ticket(request)}, headers={"Cache-Control": "no-store"})


@tenant_page()
def decision_detail(request, decision_id: int):
    from intelligence import selectors

    try:
        d = selectors.decision_get(decision_id=decision_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    payload = selectors.decision_payload(d)
    votes = sorted(payload["votes"], key=lambda v: -(payload["weights"].get(v["agent"], 0)))
    for v in votes:
        v["weight"] = payload["weights"].get(v["agent"])
    return render(request, "dashboard/decision.html", {"d": payload, "votes": votes, "features": d.features})


# --- agent weights over time -------------------------------------------------------------------

CHART_COLORS = ["#2f5bea", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d"]
CHART_W, CHART_H, CHART_LEFT, CHART_TOP, CHART_BOTTOM = 760, 260, 44, 10, 26


def _weights_chart(history: list) -> dict:
    """An inline SVG of each agent's weight over time (x proportional to time): drawn here, so the
    page loads no chart library and nothing from outside."""
    agents = sorted({a for snap in history for a in snap.weights}, key=lambda a: -(history[-1].weights.get(a) or 0))
    t0, t1 = history[0].at.timestamp(), history[-1].at.timestamp()
    span = t1 - t0
    top = max((w for snap in history for w in snap.weights.values()), default=0.0)
    y_max = max(0.1, math.ceil(top * 10 - 1e-9) / 10)  # up to the next tenth
    plot_w, plot_h = CHART_W - CHART_LEFT - 8, CHART_H - CHART_TOP - CHART_BOTTOM

    def x(i: int, snap) -> float:
        frac = (snap.at.timestamp() - t0) / span if span else (i / (len(history) - 1) if len(history) > 1 else 0.5)
        return CHART_LEFT + frac * plot_w

    def y(w: float) -> float:
        return CHART_TOP + plot_h - (w / y_max) * plot_h

    lines = []
    for k, agent in enumerate(agents):
        pts = [(x(i, s), y(s.weights[agent])) for i, s in enumerate(history) if s.weights.get(agent) is not None]
        lines.append(
            {
                "agent": agent,
                "color": CHART_COLORS[k % len(CHART_COLORS)],
                "points": " ".join(f"{px:.1f},{py:.1f}" for px, py in pts),
                "last": pts[-1] if pts else None,
                "weight": history[-1].weights.get(agent),
            }
        )
    grid = [{"y": round(y(v), 1), "label": f"{v:.2f}"} for v in (0.0, y_max / 2, y_max)]
    return {
        "lines": lines,
        "grid": grid,
        "width": CHART_W,
        "height": CHART_H,
        "left": CHART_LEFT,
        "right": CHART_W - 8,
        "axis_y": CHART_H - CHART_BOTTOM,
        "label_y": CHART_H - 8,
        "first": history[0].at,
        "last": history[-1].at,
    }


@tenant_page()
def decision_weights(request):
    from intelligence import selectors
    from intelligence.services import pipeline_load

    pipeline = pipeline_load(request.tenant)
    series = selectors.weight_series_keys()
    flow = request.GET.get("flow") or pipeline.flow_name
    if flow not in series and series:
        flow = pipeline.flow_name if pipeline.flow_name in series else next(iter(series))
    symbols = series.get(flow, [])
    symbol = (request.GET.get("symbol") or "").strip().upper()
    if symbol not in symbols:
        symbol = symbols[0] if symbols else ""
    history = selectors.weight_history(symbol=symbol, flow=flow, limit=500) if symbol else []
    chart = _weights_chart(history) if history else None
    agents = []
    if symbol and flow == pipeline.flow_name:  # the learned state the active flow decides with
        engine = pipeline.engine
        colors = {line["agent"]: line["color"] for line in chart["lines"]} if chart else {}
        for agent, weight in sorted(engine.weights(symbol).items(), key=lambda kv: -kv[1]):
            rate, outcomes = engine.hit_rate(symbol, agent)
            agents.append(
                {
                    "agent": agent,
                    "weight": weight,
                    "hit_rate_pct": rate * 100 if outcomes else None,
                    "outcomes": outcomes,
                    "color": colors.get(agent, "#8a94a6"),
                }
            )
    context = {
        "series": series,
        "flow": flow,
        "active_flow": pipeline.flow_ref,
        "is_active_flow": flow == pipeline.flow_name,
        "symbols": symbols,
        "symbol": symbol,
        "history": history,
        "chart": chart,
        "agents": agents,
        "accuracy_pct": history[-1].accuracy * 100 if history and history[-1].accuracy is not None else None,
        "reliability": _reliability(pipeline.engine.calibration_table()),
    }
    return render(request, "dashboard/decision_weights.html", context)


def _reliability(table: list[dict]) -> dict | None:
    """The consensus's reliability curve: per score bin, the confidence it states against the hit
    rate it got (a calibrated engine sits on the diagonal). SVG points on a 0.4-1.0 square."""
    rows = [r for r in table if r["outcomes"] >= 1]
    if not rows:
        return None
    size, lo = 220, 0.4

    def xy(conf: float, hit: float) -> tuple[float, float]:
        clamp = lambda v: min(1.0, max(lo, v))  # noqa: E731
        return 30 + (clamp(conf) - lo) / (1 - lo) * size, 10 + (1 - (clamp(hit) - lo) / (1 - lo)) * size

    points = []
    for r in rows:
        if r["observed"] is None:
            continue
        x, y = xy(r["confidence"], r["observed"])
        points.append({**r, "x": x, "y": y, "r": 2.5 + min(6.0, r["outcomes"] ** 0.5 / 4)})
    return {"rows": table, "points": points, "size": size, "diag": (xy(lo, lo), xy(1.0, 1.0))}


# --- positions and P&L -------------------------------------------------------------------------


POSITION_LIST = ListSpec(
    "positions",
    "positions",
    search=Search(("p__symbol",), "Symbol"),
    filters=(Choice("side", "Side", (("long", "Long"), ("short", "Short"), ("flat", "Flat"))),),
)
FILL_LIST = ListSpec(
    "fills",
    "fills",
    search=Search(("symbol",), "Symbol"),
    filters=(
        Choice.either("side", "Side", ("buy", "Buy"), ("sell", "Sell"), Q(qty__gt=0)),
        Dates("at", "Filled"),
    ),
    prefix="fill_",
)  # fmt: skip


@tenant_page()
def positions(request):
    from intelligence import selectors
    from intelligence.ledger import position_state
    from intelligence.services import pipeline_load

    cfg = pipeline_load(request.tenant).ledger
    rows = []
    for p in selectors.position_list():
        state = position_state(p, cfg)
        rows.append(
            {
                "p": p,
                "unrealized": state["unrealised_pnl"],
                "total": p.realized_pnl + state["unrealised_pnl"],
                "exposure": state["exposure"],
                "exposure_pct": state["exposure"] * 100,
                "notional": p.qty * p.last_price,
                "drawdown_pct": state["drawdown"] * 100,
                "side": "long" if p.qty > 0 else "short" if p.qty < 0 else "flat",
            }
        )
    totals = {
        "realized": sum(r["p"].realized_pnl for r in rows),
        "unrealized": sum(r["unrealized"] for r in rows),
        "fees": sum(r["p"].fees for r in rows),
        "gross_exposure": sum(r["exposure"] for r in rows),
        "net_exposure": sum(r["notional"] for r in rows) / cfg.equity if cfg.equity else 0.0,
        "open": sum(1 for r in rows if r["p"].qty),
    }
    totals["total"] = totals["realized"] + totals["unrealized"]
    totals["gross_exposure_pct"] = totals["gross_exposure"] * 100
    totals["net_exposure_pct"] = totals["net_exposure"] * 100
    fills = FILL_LIST.apply(request, selectors.fill_list(limit=None))
    for f in fills.rows:
        f.notional = abs(f.qty) * f.price
    context = {
        "rows": POSITION_LIST.apply(request, rows), "traded": len(rows), "totals": totals, "fills": fills,
        "ledger": cfg,
    }  # fmt: skip
    return render(request, "dashboard/positions.html", context)


# --- flow editor -------------------------------------------------------------------------------


def _flow_source(request, presets: dict) -> tuple[str, dict]:
    """What the editor starts from: ``?from=default|conservative|name@version``, else the active
    flow's config, else the default preset."""
    from intelligence import selectors

    wanted = request.GET.get("from", "")
    if wanted in presets:
        return f"the {wanted} preset", presets[wanted]
    name, _, version = wanted.partition("@")
    if name and version.isdigit():
        try:
            row = selectors.flow_get(name=name, version=int(version))
        except NotFound:
            pass
        else:
            return row.ref, row.config
    active = selectors.flow_active()
    if active is not None:
        return f"the active flow {active.ref}", active.config
    return "the default preset", presets["default"]


def _error_path(exc: ApplicationError, config: dict) -> str:
    """Where in the submitted config the service's error points (``agents[1]``, ``sizing.max_size``)."""
    d = exc.details
    if d.get("path"):
        return d["path"]
    if d.get("setting"):
        return f"settings.{d.get('agent')}.{d['setting']}"
    agents = config.get("agents")
    if d.get("agent") and isinstance(agents, list) and d["agent"] in agents:
        return f"agents[{agents.index(d['agent'])}]"
    return "agents" if d.get("agent") else ""


FLOW_LIST = ListSpec(
    "flows",
    "flow versions",
    search=Search(("name", "created_by"), "Name or author"),
    filters=(
        Choice.either("state", "State", ("active", "Active"), ("inactive", "Inactive"), Q(active=True)),
        Dates("created_at", "Stored"),
    ),
)  # fmt: skip


def _flows_context(request, form=None, error=None) -> dict:
    from intelligence import selectors

    presets = selectors.flow_presets(tenant=request.tenant)
    source, config = _flow_source(request, presets)
    active = selectors.flow_active()
    if form is None:
        name = active.name if active else "main"
        form = FlowForm(initial={"name": name, "config": json.dumps(config, indent=2), "activate": True})
    return {
        "flows": FLOW_LIST.apply(request, selectors.flow_list()),
        "active": active,
        "agents": selectors.agent_catalog(tenant=request.tenant),
        "plan": request.tenant.plan,
        "presets": list(presets),
        "source": source,
        "form": form,
        "error": error,
        "can_manage": can(request, Role.ADMIN),
    }


@tenant_page()
def flows(request):
    if request.method != "POST":
        return render(request, "dashboard/flows.html", _flows_context(request))
    if not can(request, Role.ADMIN):
        return forbidden(request, Role.ADMIN)
    from intelligence.services import flow_create

    form = FlowForm(request.POST)
    if not form.is_valid():
        error = {"code": "invalid_json" if "config" in form.errors else "invalid_input", "path": ""}
        return render(request, "dashboard/flows.html", _flows_context(request, form, error), status=400)
    d = form.cleaned_data
    try:
        row = flow_create(
            tenant=request.tenant, name=d["name"], config=d["config"], activate=d["activate"], actor=request.user
        )
    except ApplicationError as exc:
        path = _error_path(exc, d["config"])
        form.add_error("config", exc.message if not path or path in exc.message else f"{path}: {exc.message}")
        error = {"code": exc.code, "path": path}
        return render(request, "dashboard/flows.html", _flows_context(request, form, error), status=exc.status)
    messages.success(request, f"Saved {row.ref}" + (" and made it the active flow." if row.active else "."))
    return redirect("dashboard:flow", name=row.name, version=row.version)


def _flow_or_404(name: str, version: int):
    from intelligence import selectors

    try:
        return selectors.flow_get(name=name, version=version)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _flow_page(request, row, error=None, status: int = 200):
    from intelligence import selectors
    from intelligence.consensus import resolve_flow

    try:
        resolved = resolve_flow(row.config)
    except ApplicationError:  # stored before a rule changed: show it as stored
        resolved = None
    catalog = {a["name"]: a for a in selectors.agent_catalog(tenant=request.tenant)}
    named = (resolved or {}).get("agents", [])
    context = {
        "flow": row,
        "config_json": json.dumps(row.config, indent=2),
        "resolved_json": json.dumps(resolved, indent=2) if resolved else "",
        "agents": [catalog.get(a, {"name": a, "allowed": False, "needs_plan": None}) for a in named],
        "explicit_agents": isinstance(row.config.get("agents"), list),
        "error": error,
        "can_manage": can(request, Role.ADMIN),
    }
    return render(request, "dashboard/flow.html", context, status=status)


@tenant_page()
def flow_detail(request, name: str, version: int):
    return _flow_page(request, _flow_or_404(name, version))


@require_POST
@tenant_page(Role.ADMIN)
def flow_activate(request, name: str, version: int):
    from intelligence.services import flow_activate as activate

    row = _flow_or_404(name, version)
    try:
        activate(tenant=request.tenant, name=name, version=version, actor=request.user)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except ApplicationError as exc:
        return _flow_page(request, row, error={"code": exc.code, "message": exc.message}, status=exc.status)
    messages.success(request, f"{row.ref} is now the active flow; decisions use it from now on.")
    return redirect("dashboard:flows")


KILL_SWITCH_LIST = ListSpec(
    "kill-switches",
    "engagements",
    search=Search(("reason", "engaged_by", "lifted_by"), "Reason or person"),
    filters=(
        Choice.either("state", "State", ("engaged", "Engaged"), ("lifted", "Lifted"), Q(lifted_at=None)),
        Dates("engaged_at", "Engaged"),
    ),
)  # fmt: skip


@tenant_page()
def kill_switch(request):
    """Halt this tenant's trading now (admins); its history. Lifting is for platform staff."""
    from compliance import controls
    from tenants.models import KillSwitch

    if request.method == "POST":
        if not can(request, Role.ADMIN):
            return forbidden(request, Role.ADMIN)
        try:
            controls.kill_engage(tenant=request.tenant, reason=request.POST.get("reason", ""), actor=request.user)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Trading is halted: no decision is made until platform staff lift the switch.")
        return redirect("dashboard:kill-switch")
    switches = KillSwitch.objects.filter(tenant=request.tenant)
    context = {
        "history": KILL_SWITCH_LIST.apply(request, switches),
        "can_engage": can(request, Role.ADMIN),
        "engaged": switches.filter(lifted_at=None).exists(),
    }
    return render(request, "dashboard/kill_switch.html", context)
