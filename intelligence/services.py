"""Decisions: the pipeline of a tenant (its active flow, the agents its plan allows, the consensus
engine with its learned state), one decision from a context, and the REST path that builds the
context from stored or posted bars. The live stream (``intelligence.stream``) uses the same
pieces bar by bar."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import orjson
from django.db import connection, transaction

from api.errors import ApplicationError
from compliance.services import actor_display, audit_record

from .agents import Context, build_agents
from .agents.features import agent_feature_spec
from .consensus import ConsensusEngine, agent_settings, resolve_flow, run_agents
from .feed import publish_decisions
from .ledger import LedgerConfig, ledger_apply, position_state
from .models import Decision, EngineState, Flow, Position

CLOSES = 200  # recent closes an agent may read
DEMO_FLOW = {"name": "default"}  # the flow a tenant without one of its own runs
PIPELINE_TTL = 5.0  # seconds a web process reuses a loaded pipeline (the stream keeps its own)

_pipelines: dict[str, tuple[float, Pipeline]] = {}


@dataclass
class Pipeline:
    flow_name: str
    flow_ref: str
    flow: dict
    agents: list
    settings: dict
    engine: ConsensusEngine
    ledger: LedgerConfig
    failures: dict = field(default_factory=dict)

    def decide(self, ctx: Context):
        run = run_agents(self.agents, ctx, timeout_ms=self.flow["agent_timeout_ms"])
        return self.engine.decide(run.votes, symbol=ctx.symbol, failures=run.failures)


def allowed_agents(tenant) -> list[str] | None:
    """The agents the tenant's plan allows (None: all)."""
    from .agents import agents_for_plan

    allowed = (tenant.plan.limits or {}).get("agents", "all")
    if allowed in (None, "all"):
        return None
    return agents_for_plan(allowed)


def pipeline_load(tenant, *, fresh: bool = False) -> Pipeline:
    schema = tenant.schema_name
    hit = _pipelines.get(schema)
    if hit and not fresh and hit[0] > time.monotonic():
        return hit[1]
    row = Flow.objects.filter(active=True).first()
    name = row.name if row else DEMO_FLOW["name"]
    raw = dict(row.config) if row else {}
    flow = resolve_flow(raw)
    permitted = allowed_agents(tenant)
    if permitted is not None:
        flow["agents"] = [a for a in flow["agents"] if a in permitted]
    state = EngineState.objects.filter(flow=name).first()
    engine = ConsensusEngine.from_json(state.state) if state and state.state else ConsensusEngine(flow)
    pipeline = Pipeline(
        flow_name=name,
        flow_ref=row.ref if row else f"{name}@0",
        flow=flow,
        agents=build_agents(flow["agents"], flow["settings"]),
        settings=agent_settings(flow),
        engine=engine,
        ledger=LedgerConfig.from_flow(flow),
    )
    _pipelines[schema] = (time.monotonic() + PIPELINE_TTL, pipeline)
    return pipeline


def engine_save(pipeline: Pipeline) -> None:
    EngineState.objects.update_or_create(flow=pipeline.flow_name, defaults={"state": pipeline.engine.to_json()})


def agents_feature_set(timeframe: str):
    """The built-in feature set the agents read on ``timeframe`` (``agents-<tf>``), created once."""
    from features import selectors as fs_selectors
    from features.services import feature_set_create

    spec = agent_feature_spec(timeframe)
    try:
        return fs_selectors.feature_set_resolve(ref=f"agents-{timeframe}")
    except ApplicationError:
        fs, _ = feature_set_create(
            name=f"agents-{timeframe}",
            spec=spec.to_json(),
            description="The decision agents' inputs (built in)",
            base_timeframe=timeframe if spec.has_higher_timeframes() else "",
            actor="system",
        )
        return fs


def model_version_for(*, symbol: str, timeframe: str, flow: dict, request_key: str):
    """The registry version that answers for this instrument: the flow's ``model`` (by name), else a
    model whose production version was trained on this symbol and timeframe; honours the traffic
    split and circuit breaker. None when there is none (the ML agent then abstains)."""
    from models_registry import serving
    from models_registry.models import CircuitState, ModelAlias, RegisteredModel

    name = flow.get("model")
    model = RegisteredModel.objects.filter(name=name).first() if name else None
    if model is None:
        alias = (
            ModelAlias.objects.filter(name="production", version__symbol=symbol, version__timeframe=timeframe)
            .select_related("model")
            .first()
        )
        model = alias.model if alias else None
    if model is None:
        return None
    try:
        version = serving.version_resolve(model=model, request_key=request_key)
    except ApplicationError:
        return None
    return None if version.circuit == CircuitState.OPEN else version


def ml_prediction(version, row: dict[str, float]) -> dict | None:
    """The model's single-row prediction as the ML agent reads it; None if any input is missing."""
    from models_registry import serving

    x = [row.get(n) for n in version.feature_names]
    if any(v is None or v != v for v in x):
        return None
    out = serving.bundle_get(version).predict_one(np.asarray(x, dtype=np.float64))
    return {**out, "version": version.ref}


def fingerprint(symbol: str, timeframe: str, ts, features: dict) -> str:
    return hashlib.sha256(orjson.dumps([symbol, timeframe, str(ts), features], option=orjson.OPT_SORT_KEYS)).hexdigest()


def decision_row(
    *,
    source: str,
    symbol: str,
    timeframe: str,
    ts,
    result,
    features: dict,
    flow_ref: str,
    model_version: str,
    latency_ms: float,
    horizon: int = 1,
) -> Decision:
    """An unsaved Decision from an engine decision."""
    data = result.to_json()
    return Decision(
        source=source,
        symbol=symbol,
        timeframe=timeframe,
        ts=ts,
        action=result.action,
        confidence=result.confidence,
        raw_score=result.raw_score,
        size=result.size,
        votes=[{"agent": name, **vote} for name, vote in data["votes"].items()],
        weights=data["weights"],
        explanation=result.explanation,
        conservative=result.conservative,
        vetoed_by=result.vetoed_by or "",
        flow=flow_ref,
        model_version=model_version,
        features={k: (None if v != v else v) for k, v in features.items()},
        inputs_fingerprint=fingerprint(symbol, timeframe, ts, features),
        latency_ms=latency_ms,
        horizon=horizon,
    )


def decision_make(*, tenant, symbol: str, timeframe: str | None = None, bars: list | None = None, actor=None):
    """A decision for the latest bar of ``symbol``: the stored bars, or ``bars`` posted with the
    request (then nothing about the market is stored). Persisted, applied to the paper ledger,
    published on the feed after commit."""
    from features import selectors as fs_selectors
    from features.engine import compute_batch
    from marketdata import selectors as md_selectors
    from marketdata.validation import validate_records
    from tenants import limits

    started = time.perf_counter()
    limits.limit_check(tenant, "decisions_per_day")
    pipeline = pipeline_load(tenant)
    symbol = symbol.strip().upper()
    if bars:
        if not timeframe:
            raise ApplicationError("timeframe_required", "Say which timeframe the posted bars are.")
        report = validate_records(bars, timeframe=timeframe)
        if not report.valid:
            raise ApplicationError(
                "invalid_data", f"{report.error_count} problem(s) in the posted bars.", report.as_dict()
            )
        frame = report.frame
        feats = compute_batch(frame, agent_feature_spec(timeframe), timeframe, direct=True)
        version = model_version_for(symbol=symbol, timeframe=timeframe, flow=pipeline.flow, request_key=symbol)
        model_row = {}
        if version is not None:
            model_spec = fs_selectors.feature_set_spec(version.feature_set)
            model_row = compute_batch(frame, model_spec, timeframe, direct=True).iloc[-1].to_dict()
    else:
        instrument = md_selectors.instrument_get(symbol=symbol)
        timeframe = timeframe or md_selectors.only_timeframe(instrument=instrument)
        frame = md_selectors.bars_frame(instrument=instrument, timeframe=timeframe, limit=CLOSES)
        if frame.empty:
            raise ApplicationError("no_bars", f"{symbol} has no {timeframe} bars; import or stream some first.")
        feats = fs_selectors.stored_features(
            instrument=instrument, timeframe=timeframe, fs=agents_feature_set(timeframe)
        )
        version = model_version_for(symbol=symbol, timeframe=timeframe, flow=pipeline.flow, request_key=symbol)
        model_row = {}
        if version is not None:
            model_feats = fs_selectors.stored_features(
                instrument=instrument, timeframe=timeframe, fs=version.feature_set
            )
            model_row = model_feats.iloc[-1].to_dict() if len(model_feats) else {}
    row = {k: float(v) for k, v in feats.iloc[-1].items()}
    closes = frame["close"].to_numpy()[-CLOSES:]
    ml = ml_prediction(version, model_row) if version is not None else None
    position = Position.objects.filter(symbol=symbol).first()
    ctx = Context(
        symbol=symbol,
        timeframe=timeframe,
        ts=frame.index[-1],
        features=row,
        closes=closes,
        ml=ml,
        position=position_state(position, pipeline.ledger),
        settings=pipeline.settings,
    )
    result = pipeline.decide(ctx)
    latency = (time.perf_counter() - started) * 1000
    with transaction.atomic():
        decision = decision_row(
            source=Decision.Source.API,
            symbol=symbol,
            timeframe=timeframe,
            ts=frame.index[-1].to_pydatetime(),
            result=result,
            features=row,
            flow_ref=pipeline.flow_ref,
            model_version=ml["version"] if ml else "",
            latency_ms=latency,
        )
        decision.save()
        if not bars:  # a decision on posted bars is a what-if: it trades nothing
            ledger_apply([(decision, float(closes[-1]))], pipeline.ledger)
        from .selectors import decision_payload

        payload = decision_payload(decision)
        schema = connection.schema_name
        transaction.on_commit(lambda: publish_decisions([payload], schema))
    return decision


def flow_create(*, name: str, config: dict, activate: bool = True, actor=None) -> Flow:
    """Store ``config`` as the next version of flow ``name`` (validated), optionally active."""
    flow = resolve_flow(config)  # raises invalid_flow with the path
    build_agents(flow["agents"], flow["settings"])  # unknown agents / settings: the user's mistake
    with transaction.atomic():
        last = Flow.objects.filter(name=name).order_by("-version").first()
        row = Flow.objects.create(
            name=name, version=(last.version + 1) if last else 1, config=config, created_by=actor_display(actor)
        )
        if activate:
            Flow.objects.exclude(pk=row.pk).filter(active=True).update(active=False)
            row.active = True
            row.save(update_fields=["active"])
        audit_record(actor, "flow.created", row, {"ref": row.ref, "active": activate})
    _pipelines.pop(connection.schema_name, None)
    return row
