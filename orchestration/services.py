"""Workflows: create (validated, nothing written when any of it is wrong), run step by step on
Celery, approve / reject / cancel / retry, and recover steps whose worker was lost.

Why a chain of tasks and not one static ``celery.chain``: a static chain cannot stop at an
approval and go on when a person says so days later, cannot be resumed from its failed link, and
dies with the worker that holds it. Here each step is its own task (``orchestration.run_step``,
queue ``celery``, in the tenant's schema like every task); the state lives in the step rows, and a
step that ends queues the next one on commit. So:

- a step runs at most once at a time: it holds a PostgreSQL advisory lock on its workflow for its
  whole run (released by the server if the worker dies);
- a step is idempotent: a redelivered message finds the step done and only moves the chain on; a
  re-run train or backtest step continues the job it started (its id is in the step's result);
- a transient error (the database or Redis unreachable) is retried with exponential backoff by the
  task; a user error fails the step with a message saying what to do, and the workflow stops;
- a step whose worker was lost (``running`` without a heartbeat, and nobody holds its lock) is
  queued again by the beat sweep (:func:`workflows_reap`), like the registry's job reaper.
"""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from api.errors import ApplicationError
from compliance.services import _actor_name, actor_display, audit_record

from .models import (
    STEP_DONE,
    WORKFLOW_ACTIVE,
    Kind,
    StepState,
    Workflow,
    WorkflowState,
    WorkflowStep,
)

log = logging.getLogger(__name__)

STEPS = ("train", "validate", "backtest", "compare", "deploy", "approval", "promote")
# what a step weighs in the workflow's overall percent (training dominates the time)
WEIGHTS = {"train": 50, "validate": 2, "backtest": 20, "compare": 20, "deploy": 3, "approval": 0, "promote": 5}
COMPARE_METRICS = ("return_pct", "sharpe", "sortino", "calmar", "max_drawdown_pct", "win_rate_pct", "profit_factor")
DEFAULT_CANARY_PERCENT = 10


class Wait(Exception):
    """The step cannot go on yet (its training job runs in another worker): run it again later."""

    def __init__(self, countdown: float, message: str):
        super().__init__(message)
        self.countdown = countdown
        self.message = message


class Cancelled(Exception):
    pass


@dataclass
class Outcome:
    state: str = StepState.SUCCEEDED
    message: str = ""
    result: dict = field(default_factory=dict)


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth retrying the step for: the database or Redis briefly unreachable."""
    import redis.exceptions
    from django.db import InterfaceError, OperationalError

    return (OperationalError, InterfaceError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def system_actor(workflow: Workflow) -> str:
    """Who the audit trail and alias history name for what a running workflow does by itself."""
    return f"workflow:{str(workflow.pk)[:8]}"


# --- create --------------------------------------------------------------------------------------


def workflow_create(
    *,
    tenant,
    actor,
    model_name: str,
    symbol: str,
    can_manage: bool,
    feature_set: str = "default",
    timeframe: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    target: dict | None = None,
    families: list[str] | None = None,
    n_trials: int = 20,
    timeout_seconds: int | None = None,
    fee_bps: float = 10.0,
    allow_no_edge: bool = False,
    backtest_window: int | None = None,
    backtest_step: int | None = None,
    compare_metric: str = "return_pct",
    block_if_worse: bool = True,
    canary_percent: float | None = None,
    auto_promote: bool = True,
    idempotency_key: str | None = None,
) -> tuple[Workflow, bool]:
    """Validate a workflow request (the training request through the training service itself) and
    queue its first step. ``can_manage``: the caller may move aliases and traffic (admin or an
    admin-scoped key); an analyst's workflow routes no live traffic and waits for an admin's
    approval before it promotes. The same ``idempotency_key`` returns the first workflow."""
    from models_registry.services import training_job_create

    if idempotency_key:
        existing = Workflow.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    if compare_metric not in COMPARE_METRICS:
        raise ApplicationError(
            "invalid_metric",
            f"compare_metric is one of {', '.join(COMPARE_METRICS)}.",
            {"choices": list(COMPARE_METRICS)},
        )
    if canary_percent is None:
        canary_percent = DEFAULT_CANARY_PERCENT if can_manage else 0
    if not 0 <= canary_percent <= 100:
        raise ApplicationError("invalid_traffic", "canary_percent is a number from 0 to 100.")
    if canary_percent > 0 and not can_manage:
        raise ApplicationError(
            "insufficient_role",
            "Only admins route live traffic to a canary: start with canary_percent 0 (the new version is "
            "deployed as a challenger without traffic), or ask an admin to start the workflow.",
            {"required_role": "admin"},
            status=403,
        )
    for name, value, low in (("backtest_window", backtest_window, 50), ("backtest_step", backtest_step, 1)):
        if value is not None and not low <= value <= 100_000:
            raise ApplicationError("invalid_walk_forward", f"{name} must be {low}-100000 bars.", {"field": name})
    name = (model_name or "").strip().lower()
    active = Workflow.objects.filter(model_name=name, state__in=WORKFLOW_ACTIVE).first()
    if active is not None:
        raise ApplicationError(
            "workflow_active",
            f"Workflow {active.pk} for {name} is still {active.state}; cancel it or wait for it to end.",
            {"workflow": str(active.pk), "state": active.state},
            status=409,
        )
    with transaction.atomic():
        job, _ = training_job_create(
            tenant=tenant, actor=actor, model_name=name, symbol=symbol, feature_set=feature_set, timeframe=timeframe,
            start=start, end=end, target=target, families=families, n_trials=n_trials,
            timeout_seconds=timeout_seconds, fee_bps=fee_bps, enqueue=False,
        )  # fmt: skip
        params = {
            "training": {k: v for k, v in job.params.items() if k != "deploy_to"},
            "allow_no_edge": bool(allow_no_edge),
            "backtest": {"window": backtest_window, "step": backtest_step},
            "compare": {"metric": compare_metric, "block_if_worse": bool(block_if_worse)},
            "canary_percent": canary_percent,
            "auto_promote": bool(auto_promote),
            "starter_can_manage": bool(can_manage),
            "actor": _actor_name(actor),  # a pseudonym, for the audit trail of what the workflow does
        }
        wf = Workflow.objects.create(
            kind=Kind.TRAIN_DEPLOY, model_name=job.model_name, params=params, current_step=STEPS[0],
            idempotency_key=idempotency_key or None, created_by=actor_display(actor),
        )  # fmt: skip
        WorkflowStep.objects.bulk_create(
            WorkflowStep(workflow=wf, position=i, name=step, result={"job_id": str(job.pk)} if step == "train" else {})
            for i, step in enumerate(STEPS)
        )
        audit_record(actor, "workflow.created", wf, {"model": wf.model_name, "job": str(job.pk), **_public(params)})
        _enqueue_on_commit(wf.pk, STEPS[0])
    return wf, True


def _public(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in ("actor", "training")}


# --- queueing ------------------------------------------------------------------------------------


def enqueue(workflow_id, step: str, countdown: float | None = None) -> None:
    from .tasks import run_step

    run_step.apply_async(args=[str(workflow_id), step], countdown=countdown)


def _enqueue_on_commit(workflow_id, step: str) -> None:
    transaction.on_commit(lambda: enqueue(workflow_id, step))


# --- running a step ------------------------------------------------------------------------------


def _lock_key(workflow_id) -> int:
    return zlib.crc32(f"{connection.schema_name}:workflow:{workflow_id}".encode()) - 2**31


def _try_lock(workflow_id) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [_lock_key(workflow_id)])
        return bool(cur.fetchone()[0])


def _unlock(workflow_id) -> None:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", [_lock_key(workflow_id)])
    except Exception:  # noqa: BLE001 - a broken connection took the lock with it
        log.warning("could not release the lock of workflow %s", workflow_id, exc_info=True)


def lock_free(workflow_id) -> bool:
    """Nobody runs a step of this workflow now (a worker running one holds its lock)."""
    if not _try_lock(workflow_id):
        return False
    _unlock(workflow_id)
    return True


def step_execute(*, workflow_id, name: str) -> str:
    """Run one step of a workflow to its end (or to a wait). Safe to call any number of times."""
    if not _try_lock(workflow_id):
        return "running elsewhere"
    try:
        return _execute_locked(workflow_id, name)
    finally:
        _unlock(workflow_id)


def _execute_locked(workflow_id, name: str) -> str:
    from .steps import HANDLERS

    wf = Workflow.objects.filter(pk=workflow_id).first()
    step = WorkflowStep.objects.filter(workflow_id=workflow_id, name=name).first() if wf else None
    if wf is None or step is None:
        return "gone"
    if step.state in STEP_DONE:  # a redelivered message: only move the chain on
        with transaction.atomic():
            wf = Workflow.objects.select_for_update().get(pk=wf.pk)
            if wf.state in (WorkflowState.QUEUED, WorkflowState.RUNNING):
                _advance(wf, step)
        return step.state
    if step.state in (StepState.FAILED, StepState.CANCELLED, StepState.AWAITING_APPROVAL):
        return step.state
    if wf.finished or wf.cancel_requested:
        with transaction.atomic():
            _close_open_steps(wf, StepState.CANCELLED, "cancelled")
        return StepState.CANCELLED
    if WorkflowStep.objects.filter(workflow=wf, position__lt=step.position).exclude(state__in=STEP_DONE).exists():
        return "not ready"
    now = timezone.now()
    with transaction.atomic():
        step.attempts += 1
        step.state = StepState.RUNNING
        step.started_at = step.started_at or now
        step.heartbeat_at = now
        step.message = "running" if step.attempts == 1 else f"running again (attempt {step.attempts})"
        step.save(update_fields=["attempts", "state", "started_at", "heartbeat_at", "message"])
        Workflow.objects.filter(pk=wf.pk).update(
            state=WorkflowState.RUNNING, current_step=name, started_at=wf.started_at or now, updated_at=now
        )
    wf.refresh_from_db()
    try:
        outcome = HANDLERS[name](wf, step)
    except Cancelled:
        _step_cancelled(wf, step)
        return StepState.CANCELLED
    except ApplicationError as exc:
        _step_failed(wf, step, exc.code, exc.message, exc.details)
        return StepState.FAILED
    except (Wait, *transient_errors()):
        raise
    except Exception as exc:  # a bug: recorded on the step (and logged), the workflow stops
        log.exception("workflow %s step %s failed", wf.pk, name)
        _step_failed(wf, step, "internal_error", f"internal error: {type(exc).__name__}: {exc}"[:500])
        return StepState.FAILED
    _step_done(wf, step, outcome)
    return outcome.state


def step_heartbeat(step: WorkflowStep, *, percent: int | None = None, message: str | None = None) -> None:
    fields = {"heartbeat_at": timezone.now()}
    if percent is not None:
        fields["percent"] = max(0, min(100, int(percent)))
    if message is not None:
        fields["message"] = message[:300]
    WorkflowStep.objects.filter(pk=step.pk).update(**fields)


def step_result_save(step: WorkflowStep, **values) -> None:
    """Record part of a step's result at once (committed): a child job's id, so a re-run continues it."""
    step.result = {**(step.result or {}), **values}
    WorkflowStep.objects.filter(pk=step.pk).update(result=step.result, heartbeat_at=timezone.now())


def _step_done(wf: Workflow, step: WorkflowStep, outcome: Outcome) -> None:
    now = timezone.now()
    with transaction.atomic():
        wf = Workflow.objects.select_for_update().get(pk=wf.pk)
        step.refresh_from_db(fields=["result"])
        step.state = outcome.state
        step.message = (outcome.message or outcome.state)[:300]
        step.result = {**(step.result or {}), **outcome.result}
        step.heartbeat_at = now
        if outcome.state != StepState.AWAITING_APPROVAL:
            step.percent, step.finished_at = 100, now
        step.save(update_fields=["state", "message", "result", "heartbeat_at", "percent", "finished_at"])
        if wf.finished:  # cancelled meanwhile: the step's outcome stands, the chain does not go on
            return
        if outcome.state == StepState.AWAITING_APPROVAL:
            wf.state, wf.current_step = WorkflowState.AWAITING_APPROVAL, step.name
            wf.save(update_fields=["state", "current_step", "updated_at"])
            _emit("workflow.awaiting_approval", wf, step.message)
            return
        _advance(wf, step)


def _advance(wf: Workflow, step: WorkflowStep) -> None:
    """Queue the step after ``step`` (on commit), or end the workflow when there is none.
    Called with the workflow row locked."""
    following = WorkflowStep.objects.filter(workflow=wf, position__gt=step.position).order_by("position")
    pending = following.exclude(state__in=STEP_DONE).first()
    if pending is None:
        wf.state, wf.finished_at, wf.current_step = WorkflowState.SUCCEEDED, timezone.now(), ""
        wf.save(update_fields=["state", "finished_at", "current_step", "updated_at"])
        audit_record(system_actor(wf), "workflow.succeeded", wf, {"model": wf.model_name, "version": wf.version})
        _emit("workflow.finished", wf, _summary(wf))
        return
    wf.state, wf.current_step = WorkflowState.RUNNING, pending.name
    wf.save(update_fields=["state", "current_step", "updated_at"])
    if pending.state == StepState.PENDING:
        _enqueue_on_commit(wf.pk, pending.name)


def _step_failed(wf: Workflow, step: WorkflowStep, code: str, message: str, details: dict | None = None) -> None:
    now = timezone.now()
    with transaction.atomic():
        wf = Workflow.objects.select_for_update().get(pk=wf.pk)
        if wf.cancel_requested:
            _step_cancelled(wf, step)
            return
        step.refresh_from_db(fields=["result"])
        step.state, step.error, step.error_code = StepState.FAILED, message, code
        step.message, step.finished_at, step.heartbeat_at = f"failed: {message}"[:300], now, now
        if details:
            step.result = {**(step.result or {}), **_jsonable(details)}
        step.save(update_fields=["state", "error", "error_code", "message", "finished_at", "heartbeat_at", "result"])
        wf.state, wf.error, wf.finished_at = WorkflowState.FAILED, f"{step.name}: {message}", now
        wf.save(update_fields=["state", "error", "finished_at", "updated_at"])
        audit_record(system_actor(wf), "workflow.failed", wf, {"step": step.name, "code": code})
        _emit("workflow.failed", wf, wf.error)


def _step_cancelled(wf: Workflow, step: WorkflowStep) -> None:
    now = timezone.now()
    with transaction.atomic():
        wf = Workflow.objects.select_for_update().get(pk=wf.pk)
        WorkflowStep.objects.filter(pk=step.pk).update(
            state=StepState.CANCELLED, message="cancelled", finished_at=now, heartbeat_at=now
        )
        _close_open_steps(wf, StepState.CANCELLED, "cancelled")
        if not wf.finished:
            wf.state, wf.finished_at = WorkflowState.CANCELLED, now
            wf.save(update_fields=["state", "finished_at", "updated_at"])


def _close_open_steps(wf: Workflow, state: str, message: str) -> int:
    return WorkflowStep.objects.filter(
        workflow=wf, state__in=(StepState.PENDING, StepState.AWAITING_APPROVAL, StepState.RUNNING)
    ).update(state=state, message=message, finished_at=timezone.now())


def step_give_up(*, workflow_id, name: str, error: BaseException) -> None:
    """The task ran out of retries on a transient error: the step fails, saying what to do."""
    wf = Workflow.objects.filter(pk=workflow_id).first()
    step = WorkflowStep.objects.filter(workflow_id=workflow_id, name=name).first() if wf else None
    if wf is None or step is None or step.state != StepState.RUNNING:
        return
    _step_failed(
        wf, step, "service_unavailable",
        f"The database or Redis was unreachable after {settings.ORCHESTRATION_MAX_RETRIES} retries "
        f"({type(error).__name__}); retry the workflow once they are back.",
    )  # fmt: skip


def _jsonable(value):
    import json

    return json.loads(json.dumps(value, default=str))


def _summary(wf: Workflow) -> str:
    steps = {s.name: s for s in wf.steps.all()}
    promote = steps.get("promote")
    if promote and promote.state == StepState.SUCCEEDED:
        return f"{wf.model_name} v{wf.version} is production"
    deploy = steps.get("deploy")
    if deploy and deploy.state == StepState.SUCCEEDED:
        return f"{wf.model_name} v{wf.version} is the challenger"
    return f"{wf.model_name} v{wf.version}"


def _emit(event: str, wf: Workflow, message: str) -> None:
    from notifications.services import emit

    emit(
        event,
        {"workflow_id": str(wf.pk), "model": wf.model_name, "version": wf.version, "state": wf.state,
         "step": wf.current_step, "message": message[:300]},
        dedupe_key=f"workflow:{wf.pk}:{event}:{wf.current_step}:{timezone.now().timestamp():.0f}",
    )  # fmt: skip


# --- people's actions ----------------------------------------------------------------------------


def _locked(wf: Workflow) -> Workflow:
    return Workflow.objects.select_for_update().get(pk=wf.pk)


def _awaiting_approval(workflow: Workflow) -> tuple[Workflow, WorkflowStep]:
    """The workflow and its approval step, locked; 409 unless it awaits approval."""
    wf = _locked(workflow)
    if wf.state != WorkflowState.AWAITING_APPROVAL:
        raise ApplicationError(
            "not_awaiting_approval",
            f"The workflow is {wf.state}; only a workflow awaiting approval can be approved or rejected.",
            {"state": wf.state},
            status=409,
        )
    return wf, WorkflowStep.objects.select_for_update().get(workflow=wf, name="approval")


def workflow_approve(*, workflow: Workflow, actor, comment: str = "") -> Workflow:
    """An admin lets a workflow waiting for approval go on to promote its version."""
    with transaction.atomic():
        wf, step = _awaiting_approval(workflow)
        now = timezone.now()
        step.state, step.actor, step.percent, step.finished_at = StepState.SUCCEEDED, actor_display(actor), 100, now
        step.message = f"approved{': ' + comment if comment else ''}"[:300]
        step.result = {**(step.result or {}), "decision": "approved", "comment": comment[:500]}
        step.save(update_fields=["state", "actor", "percent", "finished_at", "message", "result"])
        audit_record(actor, "workflow.approved", wf, {"model": wf.model_name, "version": wf.version,
                                                      "comment": comment[:500]})  # fmt: skip
        _advance(wf, step)
    wf.refresh_from_db()
    return wf


def workflow_reject(*, workflow: Workflow, actor, comment: str = "") -> Workflow:
    """An admin stops a workflow waiting for approval: its version is not promoted, and its canary
    ends (the challenger alias is removed and traffic returns to production) if it is still ours."""
    from models_registry.models import ModelAlias, RegisteredModel
    from models_registry.services import CHALLENGER, alias_remove, model_settings_update

    with transaction.atomic():
        wf, step = _awaiting_approval(workflow)
        now = timezone.now()
        why = f"rejected by an admin{': ' + comment if comment else ''}"
        model = RegisteredModel.objects.filter(name=wf.model_name).first()
        canary_ended = False
        if model is not None and wf.version is not None:
            ours = ModelAlias.objects.filter(model=model, name=CHALLENGER, version__version=wf.version).exists()
            if ours:
                alias_remove(model=model, alias=CHALLENGER, actor=actor, reason=f"workflow {wf.pk}: {why}"[:500])
                if (model.traffic or {}).get("challenger_percent"):
                    model_settings_update(model=model, actor=actor, traffic={"challenger_percent": 0})
                canary_ended = True
        step.state, step.actor, step.finished_at = StepState.FAILED, actor_display(actor), now
        step.error, step.error_code, step.message = why[:1000], "rejected", why[:300]
        step.result = {**(step.result or {}), "decision": "rejected", "comment": comment[:500],
                       "canary_ended": canary_ended}  # fmt: skip
        step.save(update_fields=["state", "actor", "finished_at", "error", "error_code", "message", "result"])
        _close_open_steps(wf, StepState.CANCELLED, "not run: rejected")
        wf.state, wf.finished_at = WorkflowState.FAILED, now
        wf.error = f"approval: {why}. Production is unchanged" + ("; the canary ended." if canary_ended else ".")
        wf.save(update_fields=["state", "finished_at", "error", "updated_at"])
        audit_record(
            actor, "workflow.rejected", wf,
            {"model": wf.model_name, "version": wf.version, "comment": comment[:500], "canary_ended": canary_ended},
        )  # fmt: skip
        _emit("workflow.failed", wf, wf.error)
    wf.refresh_from_db()
    return wf


def workflow_cancel(*, workflow: Workflow, actor) -> Workflow:
    """Stop a workflow: steps not yet run are cancelled at once; a running step's training job or
    backtest is asked to stop and the step ends as cancelled. Versions already stored stay."""
    from backtesting.models import BacktestRun
    from backtesting.services import backtest_cancel
    from models_registry.models import TrainingJob
    from models_registry.services import training_job_cancel

    with transaction.atomic():
        wf = _locked(workflow)
        if wf.finished:
            raise ApplicationError(
                "workflow_finished", f"The workflow already {wf.state}; nothing to cancel.", {"state": wf.state},
                status=409,
            )  # fmt: skip
        running = WorkflowStep.objects.filter(workflow=wf, state=StepState.RUNNING).first()
        now = timezone.now()
        WorkflowStep.objects.filter(workflow=wf, state__in=(StepState.PENDING, StepState.AWAITING_APPROVAL)).update(
            state=StepState.CANCELLED, message="cancelled", finished_at=now
        )
        if running is not None:
            job = TrainingJob.objects.filter(pk=(running.result or {}).get("job_id")).first()
            if running.name == "train" and job is not None and not job.finished:
                training_job_cancel(job=job, actor=actor)
            for key in ("backtest_id", "production_backtest_id"):
                run = BacktestRun.objects.filter(pk=(running.result or {}).get(key)).first()
                if run is not None and not run.finished:
                    backtest_cancel(run=run, actor=actor)
            running.message = "cancelling"
            running.save(update_fields=["message"])
        # the train step's job was created with the workflow and may not have started yet
        train = WorkflowStep.objects.get(workflow=wf, name="train")
        if train.state == StepState.CANCELLED:
            job = TrainingJob.objects.filter(pk=(train.result or {}).get("job_id")).first()
            if job is not None and not job.finished:
                training_job_cancel(job=job, actor=actor)
        wf.cancel_requested, wf.state, wf.finished_at = True, WorkflowState.CANCELLED, now
        wf.error = "cancelled"
        wf.save(update_fields=["cancel_requested", "state", "finished_at", "error", "updated_at"])
        audit_record(actor, "workflow.cancelled", wf, {"model": wf.model_name, "step": wf.current_step})
    wf.refresh_from_db()
    return wf


def workflow_retry(*, workflow: Workflow, actor) -> Workflow:
    """Run a failed workflow again from its failed step (the steps before it keep their results).
    A failed train step trains again in a new job; a failed backtest or comparison runs a new one."""
    with transaction.atomic():
        wf = _locked(workflow)
        if wf.state != WorkflowState.FAILED:
            raise ApplicationError(
                "not_failed", f"The workflow is {wf.state}; only a failed workflow can be retried.",
                {"state": wf.state}, status=409,
            )  # fmt: skip
        failed = WorkflowStep.objects.filter(workflow=wf, state=StepState.FAILED).order_by("position").first()
        if failed is None:
            raise ApplicationError("not_failed", "No step of this workflow failed; nothing to retry.", status=409)
        result = dict(failed.result or {})
        previous = {k: result.pop(k) for k in ("job_id", "backtest_id", "production_backtest_id") if k in result}
        if failed.name == "train":
            job = _training_job_again(wf, actor)
            result = {"job_id": str(job.pk)}
        elif failed.name == "approval":
            result = {}
        if previous:
            result["previous"] = [*(failed.result or {}).get("previous", []), previous]
        failed.state, failed.error, failed.error_code, failed.percent = StepState.PENDING, "", "", 0
        failed.message, failed.result, failed.started_at, failed.finished_at = "queued again", result, None, None
        failed.actor = ""
        failed.save()
        WorkflowStep.objects.filter(workflow=wf, position__gt=failed.position, state=StepState.CANCELLED).update(
            state=StepState.PENDING, message="", finished_at=None
        )
        wf.state, wf.error, wf.finished_at, wf.current_step = WorkflowState.QUEUED, "", None, failed.name
        wf.save(update_fields=["state", "error", "finished_at", "current_step", "updated_at"])
        audit_record(actor, "workflow.retried", wf, {"model": wf.model_name, "step": failed.name})
        _enqueue_on_commit(wf.pk, failed.name)
    wf.refresh_from_db()
    return wf


def _training_job_again(wf: Workflow, actor):
    """A new training job with the workflow's training request (validated again: the data may have
    changed since, which is often why it failed)."""
    from models_registry.services import training_job_create
    from tenants.selectors import tenant_current

    p = dict(wf.params["training"])
    job, _ = training_job_create(
        tenant=tenant_current(), actor=actor, model_name=wf.model_name, symbol=p["symbol"],
        feature_set=p["feature_set"], timeframe=p["timeframe"],
        start=dt.datetime.fromisoformat(p["start"]) if p.get("start") else None,
        end=dt.datetime.fromisoformat(p["end"]) if p.get("end") else None,
        target=p["target"], families=p["families"], n_trials=p["n_trials"], timeout_seconds=p.get("timeout_seconds"),
        fee_bps=p.get("fee_bps", 10.0), enqueue=False,
    )  # fmt: skip
    return job


# --- recovering lost steps -----------------------------------------------------------------------


def workflows_reap() -> int:
    """Queue again what a lost worker left: a step ``running`` without a heartbeat for
    ORCHESTRATION_STEP_STALE_S whose lock nobody holds, and an active workflow whose next step
    was never picked up (its message lost). Returns how many steps were queued."""
    stale_before = timezone.now() - dt.timedelta(seconds=settings.ORCHESTRATION_STEP_STALE_S)
    queued = 0
    stuck = WorkflowStep.objects.filter(state=StepState.RUNNING, heartbeat_at__lt=stale_before)
    for step in stuck.select_related("workflow"):
        if lock_free(step.workflow_id):
            log.warning("workflow %s: step %s lost its worker; queued again", step.workflow_id, step.name)
            enqueue(step.workflow_id, step.name)
            queued += 1
    idle = Workflow.objects.filter(
        state__in=(WorkflowState.QUEUED, WorkflowState.RUNNING), updated_at__lt=stale_before
    ).exclude(steps__state=StepState.RUNNING)
    for wf in idle:
        pending = wf.steps.exclude(state__in=STEP_DONE).order_by("position").first()
        if pending is not None and pending.state == StepState.PENDING and lock_free(wf.pk):
            enqueue(wf.pk, pending.name)
            queued += 1
    return queued
