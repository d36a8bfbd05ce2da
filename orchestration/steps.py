"""What each step of a train-and-deploy workflow does. A handler takes the workflow and its step
row, does its work through the owning app's services (training, backtesting, the registry,
configuration), and returns an :class:`~orchestration.services.Outcome`; it raises
``ApplicationError`` with a message saying what to do when the workflow must stop there.

Handlers are idempotent: a child job (training job, backtest) is recorded in the step's result as
soon as it exists, and a step run again continues that job instead of starting another."""

from __future__ import annotations

import math
import time

import pandas as pd

from api.errors import ApplicationError

from .models import StepState, Workflow, WorkflowStep
from .services import Cancelled, Outcome, Wait, step_heartbeat, step_result_save, system_actor

FIGURES = ("return_pct", "buy_and_hold_return_pct", "sharpe", "sortino", "calmar", "max_drawdown_pct", "trades",
           "win_rate_pct", "profit_factor", "exposure_pct")  # fmt: skip


def _cancel_requested(wf: Workflow) -> bool:
    return Workflow.objects.filter(pk=wf.pk, cancel_requested=True).exists()


def _model_and_version(wf: Workflow):
    from models_registry.models import ModelVersion, RegisteredModel

    model = RegisteredModel.objects.filter(name=wf.model_name).first()
    version = (
        ModelVersion.objects.filter(model=model, version=wf.version).select_related("model", "feature_set").first()
        if model is not None and wf.version is not None
        else None
    )
    if version is None:
        raise ApplicationError("no_version", "The workflow has no trained version; retry it from the train step.")
    return model, version


# --- train ---------------------------------------------------------------------------------------


class _TrainEcho:
    """Training progress mirrored on the step (its percent follows the job's), at most once a second."""

    def __init__(self, step: WorkflowStep):
        self.step = step
        self._last = 0.0

    def __call__(self, percent: int, message: str) -> None:
        now = time.monotonic()
        if now - self._last >= 1.0 or percent >= 100:
            self._last = now
            step_heartbeat(self.step, percent=percent, message=f"training: {message}")


def train(wf: Workflow, step: WorkflowStep) -> Outcome:
    from models_registry.models import JobState, TrainingJob
    from models_registry.services import training_job_run

    job = TrainingJob.objects.filter(pk=(step.result or {}).get("job_id")).first()
    if job is None:
        raise ApplicationError("no_training_job", "The workflow's training job is gone; retry the workflow.")
    if not job.finished:
        if training_job_run(job_id=job.pk, echo=_TrainEcho(step)) == "running elsewhere":
            step_heartbeat(step, percent=job.percent, message="training runs in another worker; waiting for it")
            raise Wait(5, "training runs in another worker")
        job.refresh_from_db()
    if job.state == JobState.CANCELLED:
        if _cancel_requested(wf):
            raise Cancelled()
        raise ApplicationError(
            "training_cancelled", "The training job was cancelled; retry the workflow to train again."
        )
    if job.state == JobState.FAILED:
        raise ApplicationError("training_failed", f"Training failed: {job.error}", {"job_id": str(job.pk)})
    version = getattr(job, "model_version", None)
    if version is None:
        raise ApplicationError("no_version", "The training job stored no version; retry the workflow.")
    Workflow.objects.filter(pk=wf.pk).update(version=version.version)
    wf.version = version.version
    return Outcome(
        message=f"trained {version.ref} ({job.trials_done} trials)",
        result={"version": version.version, "ref": version.ref, "trials": job.trials_done,
                "best_score": job.best_score, "no_edge": version.no_edge},
    )  # fmt: skip


# --- validate (honesty checks) -------------------------------------------------------------------


def _f(x, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def validate(wf: Workflow, step: WorkflowStep) -> Outcome:
    """The version's own honest report: purged walk-forward out-of-sample metrics next to naive
    baselines, a significance test and the trading readout net of fees (models_registry.ml.report)."""
    _, version = _model_and_version(wf)
    report = version.report or {}
    if not report.get("oos"):
        raise ApplicationError("no_report", f"{version.ref} has no out-of-sample report; retrain it.")
    sig = report.get("significance") or {}
    trading = report.get("trading") or {}
    figures = {
        "version": version.version,
        "no_edge": version.no_edge,
        "model_accuracy": sig.get("model_accuracy"),
        "baseline": sig.get("against"),
        "baseline_accuracy": sig.get("baseline_accuracy"),
        "p_value": sig.get("p_value"),
        "net_return": trading.get("total_return"),
        "oos_rows": report.get("rows"),
        "period": report.get("period") or {},
    }
    said = (
        f"out-of-sample accuracy {_f(figures['model_accuracy'])} against its best naive baseline "
        f"({figures['baseline']}) {_f(figures['baseline_accuracy'])}, p = {_f(figures['p_value'], '.2g')}, "
        f"net return {_f(figures['net_return'], '+.1%')} after fees"
    )
    if version.no_edge:
        if not wf.params.get("allow_no_edge"):
            raise ApplicationError(
                "no_edge",
                f"{version.ref} is no better than a coin: {said}. Train on more data, with another target or "
                "feature set — or start the workflow with allow_no_edge to deploy it as a challenger anyway.",
                figures,
            )
        return Outcome(
            message=f"no edge ({said}); allowed by allow_no_edge — production's deploy gate may still refuse it",
            result={**figures, "allowed_without_edge": True},
        )
    return Outcome(message=f"has an edge: {said}", result=figures)


# --- backtest and compare ------------------------------------------------------------------------


def backtest_plan(version, params: dict) -> dict:
    """The bars of the walk-forward backtest: the version's held-out period (the out-of-sample rows
    of its report), preceded by enough bars to train the first walk-forward model (the window) and
    to warm up its features. Every bar predicted is held out from the model that predicts it."""
    from features import selectors as fs_selectors
    from marketdata import selectors as md_selectors

    instrument = md_selectors.instrument_get(symbol=version.symbol)
    period = (version.report or {}).get("period") or {}
    end = pd.Timestamp(period["report_end"]) if period.get("report_end") else version.train_end
    index = md_selectors.bars_frame(instrument=instrument, timeframe=version.timeframe, end=end).index
    if len(index) == 0:
        raise ApplicationError("no_bars", f"{version.symbol} has no {version.timeframe} bars any more; import data.")
    held_start = pd.Timestamp(period["report_start"]) if period.get("report_start") else index[len(index) * 2 // 3]
    i0 = min(int(index.searchsorted(held_start)), len(index) - 1)
    i1 = len(index) - 1
    warmup = fs_selectors.feature_set_spec(version.feature_set).warmup(version.timeframe)
    horizon = int((version.target or {}).get("horizon", 1))
    before = i0 - warmup - horizon
    window = params.get("window") or int(min(500, max(100, before)))
    first = max(0, i0 - warmup - horizon - window)
    held = i1 - i0 + 1
    step = params.get("step") or max(10, math.ceil(held / 10))
    return {
        "start": index[first].to_pydatetime(),
        "end": index[i1].to_pydatetime(),
        "held_out_start": index[i0].isoformat(),
        "held_out_end": index[i1].isoformat(),
        "held_out_bars": held,
        "window": int(window),
        "step": int(step),
    }


def _figures(run) -> dict:
    stats = run.stats or {}
    walk = stats.get("walk_forward") or {}
    return {
        **{k: stats.get(k) for k in FIGURES},
        "hit_rate": walk.get("hit_rate"),
        "base_rate": walk.get("base_rate"),
        "bars": run.bars,
    }


def _bars(plan: dict) -> dict:
    """The stored plan with its start and end as datetimes again."""
    return {**plan, **{k: pd.Timestamp(plan[k]).to_pydatetime() for k in ("start", "end")}}


def _run_backtest(wf: Workflow, step: WorkflowStep, *, key: str, version, plan: dict):
    """The walk-forward backtest of ``version`` over ``plan``'s bars, recorded under ``key`` of the
    step's result as soon as it exists; run here (inline) unless it already finished."""
    from backtesting.models import BacktestRun
    from backtesting.services import MODEL, backtest_create, backtest_execute
    from models_registry.models import JobState
    from tenants.selectors import tenant_current

    run = BacktestRun.objects.filter(pk=(step.result or {}).get(key)).first()
    if run is None:
        run = backtest_create(
            tenant=tenant_current(), actor=system_actor(wf), strategy=MODEL, symbol=version.symbol,
            timeframe=version.timeframe, start=plan["start"], end=plan["end"],
            params={"model": version.ref, "window": plan["window"], "step": plan["step"]},
            name=f"workflow {str(wf.pk)[:8]}: {version.ref}", enqueue=False,
        )  # fmt: skip
        step_result_save(step, **{key: str(run.pk)})
    if not run.finished:
        backtest_execute(run_id=run.pk)
        run.refresh_from_db()
    if run.state == JobState.CANCELLED:
        if _cancel_requested(wf):
            raise Cancelled()
        raise ApplicationError(
            "backtest_cancelled", f"The backtest of {version.ref} was cancelled; retry the workflow."
        )
    return run


def backtest(wf: Workflow, step: WorkflowStep) -> Outcome:
    from models_registry.models import JobState

    _, version = _model_and_version(wf)
    plan = (step.result or {}).get("plan")
    if plan is None:
        made = backtest_plan(version, wf.params.get("backtest") or {})
        plan = {**made, "start": made["start"].isoformat(), "end": made["end"].isoformat()}
        step_result_save(step, plan=plan)
    bars = _bars(plan)
    step_heartbeat(
        step, percent=5, message=f"walk-forward backtest of {version.ref} over {plan['held_out_bars']} held-out bars"
    )
    run = _run_backtest(wf, step, key="backtest_id", version=version, plan=bars)
    if run.state == JobState.FAILED:
        raise ApplicationError(
            "backtest_failed", f"The walk-forward backtest of {version.ref} failed: {run.error}",
            {"backtest_id": str(run.pk)},
        )  # fmt: skip
    figures = _figures(run)
    return Outcome(
        message=f"{version.ref}: {_f(figures['return_pct'], '+.2f')} % net over the held-out bars "
        f"(buy & hold {_f(figures['buy_and_hold_return_pct'], '+.2f')} %), {figures['trades']} trades",
        result={"backtest_id": str(run.pk), "figures": figures},
    )


def _verdict(new, prod) -> str:
    if new is None and prod is None:
        return "same"
    if prod is None:
        return "better"
    if new is None:
        return "worse"
    return "better" if new > prod else "same" if new == prod else "worse"


def compare(wf: Workflow, step: WorkflowStep) -> Outcome:
    """The production version's recipe, walk-forward over the same bars: both figures side by side."""
    from backtesting.models import BacktestRun
    from models_registry.models import JobState, ModelAlias

    model, version = _model_and_version(wf)
    production = ModelAlias.objects.filter(model=model, name="production").select_related("version").first()
    if production is None:
        return Outcome(
            StepState.SKIPPED, f"{model.name} has no production version yet: nothing to compare with",
            {"production": None},
        )  # fmt: skip
    if production.version_id == version.pk:
        return Outcome(StepState.SKIPPED, f"{version.ref} is already production", {"production": version.version})
    backtest_step = WorkflowStep.objects.get(workflow=wf, name="backtest")
    ours = BacktestRun.objects.get(pk=backtest_step.result["backtest_id"])
    plan = backtest_step.result["plan"]
    bars = _bars(plan)
    step_heartbeat(step, percent=5, message=f"walk-forward backtest of production {production.version.ref}")
    run = _run_backtest(wf, step, key="production_backtest_id", version=production.version, plan=bars)
    settings = wf.params.get("compare") or {}
    metric = settings.get("metric", "return_pct")
    new_figures = _figures(ours)
    result = {"metric": metric, "production_version": production.version.version, "new": new_figures,
              "production_backtest_id": str(run.pk)}  # fmt: skip
    if run.state == JobState.FAILED:
        result.update(production=None, verdict="unknown", production_error=run.error)
        if settings.get("block_if_worse", True):
            raise ApplicationError(
                "compare_failed",
                f"The backtest of production {production.version.ref} failed ({run.error}); the versions could not be "
                "compared. Retry, or start the workflow with block_if_worse false to deploy without the comparison.",
                result,
            )  # fmt: skip
        return Outcome(message=f"production's backtest failed ({run.error}); not compared", result=result)
    prod_figures = _figures(run)
    verdict = _verdict(new_figures.get(metric), prod_figures.get(metric))
    result.update(production=prod_figures, verdict=verdict)
    said = (
        f"{metric} {_f(new_figures.get(metric))} for {version.ref} against {_f(prod_figures.get(metric))} "
        f"for production {production.version.ref} over the same bars"
    )
    if verdict == "worse" and settings.get("block_if_worse", True):
        raise ApplicationError(
            "worse_than_production",
            f"{said}: the new version is worse, production stays. Start the workflow with block_if_worse false to "
            "deploy it as a challenger anyway.",
            result,
        )
    return Outcome(message=f"{verdict}: {said}", result=result)


# --- deploy, approval, promote --------------------------------------------------------------------


def deploy(wf: Workflow, step: WorkflowStep) -> Outcome:
    """The registry's deploy (seed ``deploy-ai-model``): the new version becomes the ``challenger``
    and gets ``canary_percent`` of the live traffic (0: a shadow challenger)."""
    from django.db import transaction

    from models_registry.models import ModelAlias
    from models_registry.services import CHALLENGER, model_deploy, model_settings_update

    model, version = _model_and_version(wf)
    percent = wf.params.get("canary_percent", 0)
    actor = system_actor(wf)
    before = ModelAlias.objects.filter(model=model, name=CHALLENGER).values_list("version__version", flat=True).first()
    with transaction.atomic():
        if before != version.version:
            reason = f"workflow {wf.pk}: canary"
            model_deploy(model=model, version=version, alias=CHALLENGER, reason=reason, actor=actor)
        if (model.traffic or {}).get("challenger_percent", 0) != percent:
            model_settings_update(model=model, actor=actor, traffic={"challenger_percent": percent})
    share = f"{percent:g} % of live traffic" if percent else "no live traffic (shadow)"
    return Outcome(
        message=f"{version.ref} is the challenger with {share}",
        result={"alias": CHALLENGER, "version": version.version, "traffic_percent": percent,
                "replaced_challenger": before if before != version.version else None},
    )  # fmt: skip


def approval_required(wf: Workflow) -> tuple[bool, str]:
    """Whether a person must approve before promotion, and why (or why not)."""
    from configuration.schema import LIVE
    from configuration.selectors import config_current

    config = config_current(LIVE)
    if (config.values.get("workflows") or {}).get("require_approval"):
        return True, f"the tenant's configuration ({config.ref}) requires approval before promotion"
    if not wf.params.get("starter_can_manage"):
        return True, "started by an analyst: an admin approves promotion to production"
    return False, f"no approval needed (workflows.require_approval is off in {config.ref})"


def approval(wf: Workflow, step: WorkflowStep) -> Outcome:
    if not wf.params.get("auto_promote", True):
        return Outcome(StepState.SKIPPED, "auto_promote is off: nothing to approve", {"required": False})
    required, why = approval_required(wf)
    if not required:
        return Outcome(StepState.SKIPPED, why, {"required": False, "why": why})
    return Outcome(StepState.AWAITING_APPROVAL, f"waiting for an admin: {why}", {"required": True, "why": why})


def promote(wf: Workflow, step: WorkflowStep) -> Outcome:
    """The version becomes production through the registry's deploy gate; its canary ends. The
    version production had is where a rollback goes back to."""
    from django.db import transaction

    from models_registry.models import ModelAlias
    from models_registry.services import CHALLENGER, PRODUCTION, alias_remove, model_deploy, model_settings_update

    if not wf.params.get("auto_promote", True):
        return Outcome(
            StepState.SKIPPED,
            "auto_promote is off: the version stays the challenger; promote it from the model's page when ready",
        )
    model, version = _model_and_version(wf)
    current = ModelAlias.objects.filter(model=model, name=PRODUCTION).select_related("version").first()
    if current is not None and current.version_id == version.pk:
        return Outcome(message=f"{version.ref} is production", result={"to_version": version.version})
    before = current.version.version if current else None
    actor = system_actor(wf)
    with transaction.atomic():
        model_deploy(model=model, version=version, alias=PRODUCTION, reason=f"workflow {wf.pk}: promoted", actor=actor)
        if ModelAlias.objects.filter(model=model, name=CHALLENGER, version=version).exists():
            alias_remove(model=model, alias=CHALLENGER, actor=actor, reason=f"workflow {wf.pk}: promoted")
            if (model.traffic or {}).get("challenger_percent"):
                model_settings_update(model=model, actor=actor, traffic={"challenger_percent": 0})
    return Outcome(
        message=f"{version.ref} is production"
        + (f" (was v{before}; roll back from the model's page if it misbehaves)" if before else ""),
        result={"from_version": before, "to_version": version.version, "rollback_to": before},
    )


HANDLERS = {
    "train": train,
    "validate": validate,
    "backtest": backtest,
    "compare": compare,
    "deploy": deploy,
    "approval": approval,
    "promote": promote,
}
