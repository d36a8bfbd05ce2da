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
from configuration.schema import LIVE
from notifications.decisions import offer as notify_decisions
from ops import metrics

from . import controls as decision_controls
from . import selectors
from .agents import Context, build_agents
from .agents.features import agent_feature_spec
from .broker import PaperBroker
from .consensus import ConsensusEngine, agent_settings, resolve_flow, run_agents
from .feed import publish_decisions
from .ledger import LedgerConfig, decision_insert_applied, ledger_apply, position_state
from .models import Action, Decision, EngineState, Flow, Position
from .rl_agent_input import rl_events_publish, rl_input, rl_version_for

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
    config_version: int = 0  # the live environment's configuration version it was built from
    # the configuration's runtime settings: minimum confidence, feed publishing, pre-trade controls
    runtime: dict = field(default_factory=dict)

    def decide(self, ctx: Context, *, recorded_failures: dict | None = None):
        """One decision. ``recorded_failures`` replays a recorded one: no clock (time-outs are not
        reproducible), and the agents that failed then fail again, in the agents' order."""
        if recorded_failures is None:
            run = run_agents(self.agents, ctx, timeout_ms=self.flow["agent_timeout_ms"])
            return self.engine.decide(run.votes, symbol=ctx.symbol, failures=run.failures)
        run = run_agents(self.agents, ctx, timeout_ms=None)
        failed = {
            a.name: recorded_failures.get(a.name) or run.failures[a.name]
            for a in self.agents
            if a.name in recorded_failures or a.name in run.failures
        }
        votes = {name: v for name, v in run.votes.items() if name not in failed}
        return self.engine.decide(votes, symbol=ctx.symbol, failures=failed)


def allowed_agents(tenant) -> list[str] | None:
    """The agents the tenant's plan allows (None: all)."""
    from .selectors import plan_agents

    return plan_agents(tenant.plan)


def pipeline_load(tenant, *, fresh: bool = False) -> Pipeline:
    schema = tenant.schema_name
    hit = _pipelines.get(schema)
    if hit and not fresh and hit[0] > time.monotonic():
        return hit[1]
    pipeline = _pipeline_build(tenant, learned=True)
    _pipelines[schema] = (time.monotonic() + PIPELINE_TTL, pipeline)
    return pipeline


def pipeline_fresh(tenant, environment: str = LIVE) -> Pipeline:
    """The environment's flow pipeline with its engine as the flow starts it (initial weights,
    nothing learned): what a backtest of the configuration runs, so no outcome from later leaks in."""
    return _pipeline_build(tenant, learned=False, environment=environment)


def flow_by_ref(ref: str | None) -> Flow | None:
    if not ref:
        return None
    name, _, version = ref.partition("@")
    return Flow.objects.filter(name=name, version=int(version)).first() if version.isdigit() else None


def _pipeline_build(tenant, *, learned: bool, environment: str = LIVE) -> Pipeline:
    """The pipeline an environment's configuration describes: its flow (the built-in default when
    it names none; a tenant from before environments runs its active flow) and the runtime
    settings (minimum confidence, feed publishing, pre-trade controls)."""
    from configuration.selectors import config_current

    current = config_current(environment)
    ref = current.values.get("flow")
    row = flow_by_ref(ref) if ref else (Flow.objects.filter(active=True).first() if environment == LIVE else None)
    name = row.name if row else DEMO_FLOW["name"]
    raw = dict(row.config) if row else {}
    flow = resolve_flow(raw)
    permitted = allowed_agents(tenant)
    if permitted is not None:
        flow["agents"] = [a for a in flow["agents"] if a in permitted]
    runtime = {
        "config": current.ref,
        "min_confidence": current.values["decisions"]["min_confidence"],
        "publish": current.values["feed"]["publish"],
        "controls": dict(current.values["controls"]),
    }
    state = EngineState.objects.filter(flow=name).first() if learned else None
    engine = ConsensusEngine.from_json(state.state) if state and state.state else ConsensusEngine(flow)
    return Pipeline(
        flow_name=name,
        flow_ref=row.ref if row else f"{name}@0",
        flow=flow,
        agents=build_agents(flow["agents"], flow["settings"]),
        settings=agent_settings(flow),
        engine=engine,
        ledger=LedgerConfig.from_flow(flow),
        config_version=current.version,
        runtime=runtime,
    )


def pipeline_restore(checkpoint) -> Pipeline:
    """The pipeline a stream process ran, as an ``EngineCheckpoint`` recorded it (a replay's start)."""
    flow = dict(checkpoint.flow_config)
    runtime = flow.pop("runtime", None) or {}  # the configuration it ran with (none before environments)
    return Pipeline(
        flow_name=checkpoint.flow,
        flow_ref=checkpoint.flow_ref,
        flow=flow,
        agents=build_agents(flow["agents"], flow["settings"]),
        settings=agent_settings(flow),
        engine=ConsensusEngine.from_json(checkpoint.state),
        ledger=LedgerConfig.from_flow(flow),
        runtime=runtime,
    )


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


def model_for(*, symbol: str, timeframe: str, flow: dict):
    """The registered model that answers for this instrument: the flow's ``model`` (by name), else
    a model whose production version was trained on this symbol and timeframe. None if none."""
    from models_registry.models import ModelAlias, RegisteredModel

    name = flow.get("model")
    model = RegisteredModel.objects.filter(name=name).first() if name else None
    if model is None:
        alias = (
            ModelAlias.objects.filter(name="production", version__symbol=symbol, version__timeframe=timeframe)
            .exclude(version__task="rl")  # an RL policy votes as the rl agent, not through the ML agent
            .select_related("model")
            .first()
        )
        model = alias.model if alias else None
    return model


def ab_key(symbol: str, ts) -> str:
    """The traffic-split key of one decision: per bar, so an A/B test splits a single instrument's
    bars between the arms (each bar an independent trial) and a redelivered bar takes the same arm."""
    epoch = int(ts.timestamp()) if hasattr(ts, "timestamp") else int(ts)
    return f"{symbol}:{epoch}"


SERVING_TTL = 2.0  # seconds a process reuses who serves an instrument (its own registry writes: at once)
_serving: dict[tuple, tuple[float, int, object]] = {}


def model_arms_for(*, symbol: str, timeframe: str, flow: dict):
    """The serving arms (production, challenger, split) of the model answering for this
    instrument, or None; cached per process for ``SERVING_TTL`` and dropped at once when this
    process changes the registry (another process's deploy, rollback or circuit change takes
    effect here within the TTL)."""
    from models_registry import serving

    key = (connection.schema_name, symbol, timeframe, flow.get("model"))
    now = time.monotonic()
    hit = _serving.get(key)
    if hit is not None and hit[0] > now and hit[1] == serving.generation:
        return hit[2]
    generation = serving.generation
    model = model_for(symbol=symbol, timeframe=timeframe, flow=flow)
    arms = serving.arms_get(model) if model is not None else None
    if len(_serving) > 10_000:
        _serving.clear()
    _serving[key] = (now + SERVING_TTL, generation, arms)
    return arms


def model_version_for(*, symbol: str, timeframe: str, flow: dict, request_key: str):
    """The registry version that answers this request (traffic split and circuit breaker honoured);
    None when there is none or its circuit is open (the ML agent then abstains)."""
    arms = model_arms_for(symbol=symbol, timeframe=timeframe, flow=flow)
    return arms.pick(request_key) if arms is not None else None


def ml_prediction(version, row: dict[str, float]) -> dict | None:
    """The model's single-row prediction as the ML agent reads it; None if any input is missing or
    the prediction fails (counted by the circuit breaker: repeated errors open the circuit)."""
    from models_registry import breaker, serving

    x = [row.get(n) for n in version.feature_names]
    if any(v is None or v != v for v in x):
        return None
    try:
        out = serving.bundle_get(version).predict_one(np.asarray(x, dtype=np.float64))
    except Exception as exc:  # noqa: BLE001 - any model failure falls back to the other agents
        breaker.record_error(version, exc)
        return None
    breaker.record_success(version)
    return {**out, "version": version.ref}


def ml_predictions(version, rows: list[dict[str, float]]) -> list[dict | None]:
    """``ml_prediction`` for many rows in one batch call (the stream's read batches)."""
    from models_registry import breaker, serving

    names = version.feature_names
    ok = [i for i, row in enumerate(rows) if all((v := row.get(n)) is not None and v == v for n in names)]
    out: list[dict | None] = [None] * len(rows)
    if not ok:
        return out
    x = np.array([[rows[i][n] for n in names] for i in ok], dtype=np.float64)
    try:
        preds = serving.bundle_get(version).predict_many(x)
    except Exception as exc:  # noqa: BLE001
        breaker.record_error(version, exc)
        return out
    breaker.record_success(version)
    ref = version.ref
    for i, pred in zip(ok, preds, strict=True):
        pred["version"] = ref
        out[i] = pred
    return out


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
    inputs: dict | None = None,
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
        inputs=inputs or {},
    )


def _recent_bars(instrument, timeframe: str):
    """The last ``CLOSES`` stored bars, cached per process until the instrument's bars change
    (``bars_version`` moves with every import, stream batch and delete); shared: do not modify."""
    from features import cache as features_cache
    from marketdata import selectors as md_selectors

    key = ("recent-bars", connection.schema_name, instrument.pk, instrument.bars_version, timeframe, CLOSES)
    return features_cache.stored_features.get_or_compute(
        key, lambda: md_selectors.bars_frame(instrument=instrument, timeframe=timeframe, limit=CLOSES)
    )


def decision_make(*, tenant, symbol: str, timeframe: str | None = None, bars: list | None = None, actor=None):
    """A decision for the latest bar of ``symbol``: the stored bars, or ``bars`` posted with the
    request (then nothing about the market is stored). Persisted, applied to the paper ledger,
    published on the feed after commit."""
    from compliance import controls
    from features import selectors as fs_selectors
    from features.engine import compute_batch
    from marketdata import selectors as md_selectors
    from marketdata.validation import validate_records
    from tenants import limits, metering

    started = time.perf_counter()
    controls.kill_check(tenant.schema_name)  # halted: no decision (RTS 6 Art. 12)
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
        key = ab_key(symbol, frame.index[-1])
        version = model_version_for(symbol=symbol, timeframe=timeframe, flow=pipeline.flow, request_key=key)
        model_row = {}
        if version is not None:
            model_spec = fs_selectors.feature_set_spec(version.feature_set)
            model_row = compute_batch(frame, model_spec, timeframe, direct=True).iloc[-1].to_dict()
        rl_version = rl_version_for(symbol=symbol, timeframe=timeframe) if "rl" in pipeline.flow["agents"] else None
        rl_row = {}
        if rl_version is not None and rl_version.feature_names:
            rl_spec = fs_selectors.feature_set_spec(rl_version.feature_set)
            rl_row = compute_batch(frame, rl_spec, timeframe, direct=True).iloc[-1].to_dict()
        row = {k: float(v) for k, v in feats.iloc[-1].items()}
        position = Position.objects.filter(symbol=symbol).first()
    else:
        instrument, position = selectors.instrument_with_position(symbol=symbol)
        timeframe = timeframe or md_selectors.only_timeframe(instrument=instrument)
        frame = _recent_bars(instrument, timeframe)
        if frame.empty:
            raise ApplicationError("no_bars", f"{symbol} has no {timeframe} bars; import or stream some first.")
        row = fs_selectors.latest_features(instrument=instrument, timeframe=timeframe, fs=agents_feature_set(timeframe))
        key = ab_key(symbol, frame.index[-1])
        version = model_version_for(symbol=symbol, timeframe=timeframe, flow=pipeline.flow, request_key=key)
        model_row = {}
        if version is not None:
            model_row = fs_selectors.latest_features(instrument=instrument, timeframe=timeframe, fs=version.feature_set)
        rl_version = rl_version_for(symbol=symbol, timeframe=timeframe) if "rl" in pipeline.flow["agents"] else None
        rl_row = {}
        if rl_version is not None and rl_version.feature_names:
            rl_row = fs_selectors.latest_features(instrument=instrument, timeframe=timeframe, fs=rl_version.feature_set)
    closes = frame["close"].to_numpy()[-CLOSES:]
    ml = ml_prediction(version, model_row) if version is not None else None
    ctx = Context(
        symbol=symbol,
        timeframe=timeframe,
        ts=frame.index[-1],
        features=row,
        closes=closes,
        ml=ml,
        rl=rl_input(rl_version, rl_row) if rl_version is not None else None,
        position=position_state(position, pipeline.ledger),
        settings=pipeline.settings,
    )
    result = pipeline.decide(ctx)
    latency = (time.perf_counter() - started) * 1000
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
    price = float(closes[-1])
    runtime = pipeline.runtime
    schema = connection.schema_name
    if runtime:
        decision.inputs["config"] = runtime["config"]  # the configuration version it ran under
    decision_controls.pretrade(decision, price=price, position=ctx.position, runtime=runtime, ledger=pipeline.ledger)
    if not bars:
        decision_controls.throttle([decision], runtime=runtime, schema=schema)
    # a posted-bars decision is a what-if and trades nothing. A HOLD: one statement, its own
    # transaction (the decision and the position marked to the price, compare-and-set on the
    # position it was decided on). An actionable decision is executed through the paper broker
    # (spread, latency, partial fills) like the stream's, which publishes the trade events.
    if bars:
        decision.save()
    elif decision.action != Action.HOLD or not decision_insert_applied(decision, price, pipeline.ledger, position):
        with transaction.atomic():  # under the position's row lock (a HOLD: its position moved meanwhile)
            decision.save()
            broker = PaperBroker.from_flow(pipeline.flow)
            ledger_apply([(decision, price)], pipeline.ledger, fresh=True, broker=broker)
    if not bars:
        if decision.vetoed_by.startswith("control:"):
            decision_controls.alert_blocked(decision.vetoed_by[8:], decision.inputs["blocked"]["reason"])
        decision_controls.ledger_guard(tenant=tenant, runtime=runtime, ledger=pipeline.ledger)
    payload = selectors.decision_payload(decision)
    notify_decisions([(payload, price)], schema)
    if runtime.get("publish", True):
        transaction.on_commit(lambda: publish_decisions([payload], schema))
    if rl_version is not None:
        transaction.on_commit(lambda: rl_events_publish(decision, schema))
    metering.units_add_many(tenant, {"decision": 1, "prediction": 1 if ml else 0})
    metrics.decision_observed(source="api", tenant=tenant, latency_ms=decision.latency_ms)
    return decision


def agents_plan_check(*, tenant, agents: list[str], remedy: str) -> None:
    """Refuse agents the tenant's plan does not include (``agent_not_in_plan``, 403), saying
    ``remedy``; ``details.path`` points at the first one in ``agents``."""
    permitted = allowed_agents(tenant)
    if permitted is None:
        return
    blocked = [(i, a) for i, a in enumerate(agents) if a not in permitted]
    if blocked:
        names = [a for _, a in blocked]
        raise ApplicationError(
            "agent_not_in_plan",
            f"Your plan '{tenant.plan.code}' does not include the agent(s) {', '.join(names)}; {remedy}.",
            {"path": f"agents[{blocked[0][0]}]", "agents": names, "plan": tenant.plan.code, "allowed": permitted},
            status=403,
        )


def flow_plan_check(*, tenant, config: dict) -> None:
    """Refuse a flow that names an agent the tenant's plan does not include. A flow that names no
    agents runs the default flow's agents its plan allows."""
    named = config.get("agents") if isinstance(config, dict) else None
    if isinstance(named, list):
        agents_plan_check(tenant=tenant, agents=named, remedy="remove them from the flow or upgrade the plan")


def _activate(row: Flow | None) -> None:
    """Mirror the live environment's flow in ``Flow.active`` (inside the writing transaction)."""
    Flow.objects.filter(active=True).exclude(pk=row.pk if row else None).update(active=False)
    if row is not None and not row.active:
        row.active = True
        row.save(update_fields=["active"])


def _flows_lock() -> None:
    """Serialise flow writes of this tenant (inside a transaction): version numbers are
    read-then-written, and two concurrent writers would otherwise hit the unique constraint with
    a 500."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{connection.schema_name}.flows"])


def flow_config_check(value, tenant) -> None:
    """The configuration's ``flow`` must name a stored flow version the tenant's plan allows."""
    row = flow_by_ref(value)
    if row is None:
        raise ApplicationError(
            "invalid_config",
            "flow must name a stored flow version as name@version; GET /api/v1/flows/ lists them.",
            {"path": "flow"},
        )
    flow_plan_check(tenant=tenant, config=row.config)


def config_changed(tenant, environment: str, before: dict, after: dict) -> None:
    """Configuration hook: the live environment's flow is the active flow; its pipeline is rebuilt."""
    if environment != LIVE:
        return
    if before.get("flow") != after.get("flow"):
        _activate(flow_by_ref(after.get("flow")))
    schema = connection.schema_name
    _pipelines.pop(schema, None)  # now, and again once committed (a request meanwhile cached the old)
    transaction.on_commit(lambda: _pipelines.pop(schema, None))


def flow_create(*, tenant, name: str, config: dict, activate: bool = True, environment: str = LIVE, actor=None) -> Flow:
    """Store ``config`` as the next version of flow ``name`` (validated, and checked against the
    tenant's plan), optionally activated in ``environment`` (a new configuration version there).
    Nothing is written when any check fails."""
    from configuration.services import config_set

    flow = resolve_flow(config)  # raises invalid_flow with the path
    build_agents(flow["agents"], flow["settings"])  # unknown agents / settings: the user's mistake
    flow_plan_check(tenant=tenant, config=config)
    with transaction.atomic():
        _flows_lock()
        last = Flow.objects.filter(name=name).order_by("-version").first()
        row = Flow.objects.create(
            name=name, version=(last.version + 1) if last else 1, config=config, created_by=actor_display(actor)
        )
        audit_record(actor, "flow.created", row, {"ref": row.ref, "activated_in": environment if activate else None})
        if activate:
            config_set(
                tenant=tenant, environment=environment, values={"flow": row.ref}, partial=True, actor=actor,
                comment=f"flow {row.ref} created and activated", source="flow",
            )  # fmt: skip
            row.refresh_from_db(fields=["active"])
    return row


def flow_activate(*, tenant, name: str, version: int, environment: str = LIVE, actor=None) -> Flow:
    """Make an existing version the flow ``environment`` runs (a rollback to an older one, or a
    version stored inactive): a new configuration version there, pushed to the running
    processes. Versions never change; activating the version in force changes nothing."""
    from configuration.selectors import config_current, environment_check
    from configuration.services import config_set

    from .selectors import flow_get

    environment_check(environment)
    row = flow_get(name=name, version=version)  # not_found, without echoing the name
    previous = config_current(environment).values.get("flow")
    if previous == row.ref:
        return row
    flow_plan_check(tenant=tenant, config=row.config)  # the plan may have changed since it was stored
    with transaction.atomic():
        config_set(
            tenant=tenant, environment=environment, values={"flow": row.ref}, partial=True, actor=actor,
            comment=f"flow {row.ref} activated", source="flow",
        )  # fmt: skip
        audit_record(actor, "flow.activated", row, {"ref": row.ref, "environment": environment, "previous": previous})
    row.refresh_from_db(fields=["active"])
    return row
