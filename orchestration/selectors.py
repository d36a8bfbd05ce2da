"""Workflow reads: lists, one workflow with its steps, and live progress (a running train or
backtest step's percent is its child job's)."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from api.errors import NotFound

from .models import WORKFLOW_ACTIVE, StepState, Workflow, WorkflowStep


def workflow_list(*, state: str | None = None, model_name: str | None = None) -> QuerySet[Workflow]:
    qs = Workflow.objects.prefetch_related(Prefetch("steps", queryset=WorkflowStep.objects.order_by("position")))
    if state:
        qs = qs.filter(state=state)
    if model_name:
        qs = qs.filter(model_name=model_name.lower())
    return qs.order_by("-created_at", "-id")


def workflow_get(*, workflow_id) -> Workflow:
    try:
        uuid.UUID(str(workflow_id))
    except ValueError:
        raise NotFound("workflow") from None
    found = workflow_list().filter(pk=workflow_id).first()
    if found is None:
        raise NotFound("workflow")
    return found


def workflows_active() -> QuerySet[Workflow]:
    return workflow_list().filter(state__in=WORKFLOW_ACTIVE)


def live_percents(steps: list[WorkflowStep]) -> dict[int, int]:
    """Step pk -> percent, a running train/backtest/compare step's taken from its child job."""
    from backtesting.models import BacktestRun
    from models_registry.models import TrainingJob

    running = [s for s in steps if s.state == StepState.RUNNING]
    jobs = {str(s.result.get("job_id")) for s in running if s.name == "train" and s.result.get("job_id")}
    runs = {
        str(s.result.get(key))
        for s in running
        for key in ("backtest_id", "production_backtest_id")
        if s.result.get(key)
    }
    job_pct = {str(k): v for k, v in TrainingJob.objects.filter(pk__in=jobs).values_list("pk", "percent")}
    run_pct = {str(k): v for k, v in BacktestRun.objects.filter(pk__in=runs).values_list("pk", "percent")}
    out = {}
    for s in steps:
        pct = s.percent
        if s.state == StepState.RUNNING:
            if s.name == "train":
                pct = max(pct, job_pct.get(str(s.result.get("job_id")), 0))
            elif s.name == "backtest":
                pct = max(pct, run_pct.get(str(s.result.get("backtest_id")), 0))
            elif s.name == "compare":
                pct = max(pct, run_pct.get(str(s.result.get("production_backtest_id")), 0))
        elif s.state in (StepState.SUCCEEDED, StepState.SKIPPED):
            pct = 100
        out[s.pk] = min(100, int(pct))
    return out


def stored_percents(steps: list[WorkflowStep]) -> dict[int, int]:
    """Step pk -> percent as stored (no child lookups: for lists)."""
    return {s.pk: 100 if s.state in (StepState.SUCCEEDED, StepState.SKIPPED) else s.percent for s in steps}


def workflow_percent(steps: list[WorkflowStep], percents: dict[int, int] | None = None) -> int:
    """The workflow's overall progress: its steps' percents weighted by how long they usually take."""
    from .services import WEIGHTS

    percents = percents if percents is not None else live_percents(steps)
    total = sum(WEIGHTS.get(s.name, 1) for s in steps) or 1
    done = sum(WEIGHTS.get(s.name, 1) * percents.get(s.pk, 0) / 100 for s in steps)
    return int(done * 100 / total)
