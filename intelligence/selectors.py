"""Reads for decisions, positions and flows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from django.db import connection
from django.db.models import QuerySet

from api.errors import NotFound

from .models import Decision, Fill, Flow, Position, WeightSnapshot


def decision_payload(d: Decision) -> dict:
    """The one shape of a decision, in REST and on the WebSocket feed."""
    return {
        "id": d.id,
        "symbol": d.symbol,
        "timeframe": d.timeframe,
        "ts": d.ts.isoformat(),
        "action": d.action,
        "confidence": d.confidence,
        "size": d.size,
        "votes": d.votes,
        "weights": d.weights,
        "explanation": d.explanation,
        "conservative": d.conservative,
        "vetoed_by": d.vetoed_by or None,
        "flow": d.flow,
        "model_version": d.model_version or None,
        "latency_ms": d.latency_ms,
        "created_at": d.created_at.isoformat() if d.created_at else None,
        "outcome": None if d.resolved_at is None else {"realized": d.realized, "correct": d.correct},
    }


def decision_list(
    *, symbol: str | None = None, after: int | None = None, limit: int | None = 100
) -> QuerySet[Decision]:
    """Newest first; with ``after``, the decisions after that id, oldest first (to resume a feed).
    ``limit=None``: all of them, still a QuerySet to filter and page."""
    qs = Decision.objects.all().defer("features")
    if symbol:
        qs = qs.filter(symbol=symbol.upper())
    if after is not None:
        return qs.filter(id__gt=after).order_by("id")[:limit]
    return qs.order_by("-id")[:limit]


def decisions_after(*, after: int, symbols: set[str] | None = None, limit: int = 1000) -> list[dict]:
    qs = Decision.objects.filter(id__gt=after).defer("features").order_by("id")
    if symbols:
        qs = qs.filter(symbol__in=symbols)
    return [decision_payload(d) for d in qs[:limit]]


def decision_get(*, decision_id: int) -> Decision:
    d = Decision.objects.filter(pk=decision_id).first()
    if d is None:
        raise NotFound("decision")
    return d


def instrument_with_position(*, symbol: str):
    """The instrument ``symbol`` and its paper position (or None), in one round trip: what a REST
    decision reads before deciding. ``NotFound`` for an unknown symbol."""
    from marketdata.models import Instrument
    from marketdata.services import symbol_clean

    symbol = symbol_clean(symbol)
    ifields, pfields = Instrument._meta.concrete_fields, Position._meta.concrete_fields
    qn = connection.ops.quote_name
    sql = (
        "SELECT "
        + ", ".join([f"i.{qn(f.column)}" for f in ifields] + [f"p.{qn(f.column)}" for f in pfields])
        + f" FROM {qn(Instrument._meta.db_table)} i LEFT JOIN {qn(Position._meta.db_table)} p"
        " ON p.symbol = i.symbol WHERE i.symbol = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [symbol])
        row = cursor.fetchone()
    if row is None:
        raise NotFound("instrument", {"symbol": symbol})
    n = len(ifields)
    instrument = Instrument.from_db("default", [f.attname for f in ifields], row[:n])
    position = None if row[n] is None else Position.from_db("default", [f.attname for f in pfields], row[n:])
    return instrument, position


def position_list() -> QuerySet[Position]:
    return Position.objects.order_by("symbol")


def flow_list() -> QuerySet[Flow]:
    return Flow.objects.order_by("name", "-version")


def flows_in_force() -> dict[str, list[str]]:
    """``{"name@version": [environments running it]}``; prod's flow when it names none is the active one."""
    from configuration.schema import LIVE
    from configuration.selectors import config_all

    out: dict[str, list[str]] = {}
    for current in config_all():
        ref = current.values.get("flow")
        if ref is None and current.environment == LIVE:
            active = flow_active()
            ref = active.ref if active else None
        if ref:
            out.setdefault(ref, []).append(current.environment)
    return out


def flow_diff(old: Flow | None, new: Flow) -> list[dict]:
    """Setting by setting (defaults filled in), what ``new`` changes from ``old`` (None: the defaults)."""
    from configuration.schema import flatten

    from .consensus import resolve_flow

    a = flatten(resolve_flow(dict(old.config) if old else {}))
    b = flatten(resolve_flow(dict(new.config)))
    return [{"path": k, "from": a.get(k), "to": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def flow_active() -> Flow | None:
    return Flow.objects.filter(active=True).first()


def flow_get(*, name: str, version: int) -> Flow:
    """One version of a flow; the 404 never repeats the name asked for."""
    row = Flow.objects.filter(name=name, version=version).first()
    if row is None:
        raise NotFound("flow version")
    return row


def fill_list(*, symbol: str | None = None, limit: int | None = 50) -> QuerySet[Fill]:
    """The most recent paper fills, newest first (``limit=None``: all, a QuerySet to filter and page)."""
    qs = Fill.objects.order_by("-id")
    if symbol:
        qs = qs.filter(symbol=symbol.upper())
    return qs[:limit]


def weight_history(*, symbol: str | None = None, flow: str | None = None, limit: int = 500) -> list[WeightSnapshot]:
    """The most recent ``limit`` weight snapshots, returned oldest first (the order a chart draws)."""
    qs = WeightSnapshot.objects.all()
    if symbol:
        qs = qs.filter(symbol=symbol.upper())
    if flow:
        qs = qs.filter(flow=flow)
    return list(qs.order_by("-at", "-id")[:limit])[::-1]


def weight_series_keys() -> dict[str, list[str]]:
    """Flow name -> the symbols it has weight snapshots for (what the chart can be asked for)."""
    out: dict[str, list[str]] = {}
    for flow, symbol in WeightSnapshot.objects.values_list("flow", "symbol").distinct().order_by("flow", "symbol"):
        out.setdefault(flow, []).append(symbol)
    return out


def plan_agents(plan) -> list[str] | None:
    """The agents a plan allows, by its ``limits["agents"]`` (None: all of them)."""
    from .agents import agents_for_plan

    allowed = (plan.limits or {}).get("agents", "all")
    if allowed in (None, "all"):
        return None
    return agents_for_plan(allowed)


def agent_catalog(*, tenant) -> list[dict]:
    """Every registered agent, whether the tenant's plan allows it, and the cheapest plan that does
    (so a page can say "needs Pro" instead of just "not allowed")."""
    from tenants.models import Plan

    from .agents import REGISTRY

    plans = [(p, plan_agents(p)) for p in Plan.objects.order_by("monthly_price_cents", "code")]
    permitted = plan_agents(tenant.plan)
    out = []
    for name, cls in REGISTRY.items():
        allowed = permitted is None or name in permitted
        cheapest = next((p for p, names in plans if names is None or name in names), None)
        out.append(
            {
                "name": name,
                "tier": cls.tier,
                "directional": cls.directional,
                "summary": cls.summary,
                "allowed": allowed,
                "needs_plan": None if allowed or cheapest is None else {"code": cheapest.code, "name": cheapest.name},
            }
        )
    return out


def flow_presets(*, tenant) -> dict[str, dict]:
    """Ready-made flow configs, each naming only the agents the tenant's plan allows (so a preset
    can always be stored as it is)."""
    import copy

    from .consensus import CONSERVATIVE_PRESET, DEFAULT_FLOW

    permitted = plan_agents(tenant.plan)
    out = {}
    for key, preset in (("default", DEFAULT_FLOW), ("conservative", CONSERVATIVE_PRESET)):
        preset = copy.deepcopy(preset)
        if permitted is not None:
            preset["agents"] = [a for a in preset["agents"] if a in permitted]
        out[key] = preset
    return out


def flow_active_name() -> str:
    """The name of the flow that decides now (``default`` when the tenant stored none)."""
    from .services import DEMO_FLOW

    row = flow_active()
    return row.name if row else DEMO_FLOW["name"]


ALLOCATION_METHODS = ("risk_parity", "inverse_volatility", "mean_variance")


def allocation_suggest(
    *, tenant, method: str = "risk_parity", timeframe: str = "1d", lookback: int = 250, symbols=None
) -> dict:
    """Suggested weights across the tenant's instruments (seed: portfolio optimisation) from the
    log returns of their last ``lookback`` stored bars on common timestamps. A suggestion: the
    portfolio agent caps each trade at its weight when a flow sets ``settings.portfolio.weights``."""
    from api.errors import ApplicationError
    from marketdata import selectors as md_selectors

    from .agents.portfolio import allocate
    from .services import agents_plan_check

    agents_plan_check(tenant=tenant, agents=["portfolio"], remedy="upgrade the plan for portfolio optimisation")
    instruments = list(md_selectors.instrument_list())
    if symbols:
        wanted = {s.strip().upper() for s in symbols if s.strip()}
        instruments = [i for i in instruments if i.symbol in wanted]
    closes = {}
    for instrument in instruments:
        frame = md_selectors.bars_frame(instrument=instrument, timeframe=timeframe, limit=lookback + 1)
        if len(frame) > 1:
            closes[instrument.symbol] = frame["close"]
    table = pd.DataFrame(closes).dropna() if closes else pd.DataFrame()
    if table.shape[1] < 2 or len(table) < 31:
        raise ApplicationError(
            "not_enough_data",
            f"Allocation needs at least 2 instruments with 31 common {timeframe} bars; found {table.shape[1]} "
            f"instrument(s) and {len(table)} common bar(s). Import bars for more instruments, or pick the "
            "timeframe they share.",
            {"instruments": sorted(closes), "common_bars": len(table)},
        )
    returns = np.log(table).diff().dropna()
    weights = allocate(returns.to_numpy(), list(returns.columns), method)
    cov = returns.cov().to_numpy()
    w = np.array([weights[s] for s in returns.columns])
    vol = returns.std()
    return {
        "method": method,
        "timeframe": timeframe,
        "lookback": lookback,
        "observations": len(returns),
        "from": returns.index[0].isoformat(),
        "to": returns.index[-1].isoformat(),
        "weights": {s: round(weights[s], 6) for s in returns.columns},
        "volatility": {s: round(float(vol[s]), 6) for s in returns.columns},
        "risk_contribution": {
            s: round(float(x), 6) for s, x in zip(returns.columns, w * (cov @ w) / float(w @ cov @ w), strict=True)
        },
        "portfolio_volatility": round(float(np.sqrt(w @ cov @ w)), 6),
        "use": "Set a flow's settings.portfolio.weights to these to cap each trade at its weight.",
    }
