"""Shared pieces of the workflow tests: bars with a planted edge (or none), a small feature set that
exposes it, and a driver that runs a workflow's steps in this process, one after the other, as the
worker would (the Celery hand-off itself is tested with a real worker in test_worker.py)."""

from __future__ import annotations

from django_tenants.utils import schema_context

from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from orchestration.models import STEP_DONE, StepState, Workflow, WorkflowState
from orchestration.services import step_execute

# a bar's direction follows the one two bars back with probability 0.75: the lagged returns expose
# it, the naive baselines miss it (as in tests/browser/test_models_journey.py)
EDGE = {"n": 900, "seed": 17, "planted_signal": 0.25, "planted_lag": 2}
NO_EDGE = {"n": 900, "seed": 3}
SPEC = {"features": [{"indicator": "returns", "params": {"kind": "log", "length": 1}, "lags": [1, 2]}]}
# tiny training: one family, two trials
TINY = {"families": ["logistic"], "n_trials": 2}


def market(tenant, symbol: str = "FLOW", bars: dict | None = None) -> None:
    """Bars of ``symbol`` (1d) and the ``lagged`` feature set, in ``tenant``'s schema."""
    from features.services import feature_set_create

    spec = dict(bars or EDGE)
    n = spec.pop("n")
    with schema_context(tenant.schema_name):
        raw = read_table(as_csv(generate_bars(n, **spec)), "csv")
        md_services.bars_import(tenant=tenant, symbol=symbol, timeframe="1d", raw=raw)
        feature_set_create(name="lagged", spec=SPEC, actor="test")


def drive(workflow_id, *, stop_before: str | None = None, limit: int = 20) -> Workflow:
    """Run the workflow's next step until it waits for a person, ends, or reaches ``stop_before``."""
    for _ in range(limit):
        wf = Workflow.objects.get(pk=workflow_id)
        if wf.finished or wf.state == WorkflowState.AWAITING_APPROVAL:
            return wf
        step = wf.steps.exclude(state__in=STEP_DONE).order_by("position").first()
        if step is None or step.state not in (StepState.PENDING, StepState.RUNNING) or step.name == stop_before:
            return wf
        step_execute(workflow_id=workflow_id, name=step.name)
    raise AssertionError("the workflow did not stop")


def states(wf: Workflow) -> dict[str, str]:
    return dict(wf.steps.order_by("position").values_list("name", "state"))


def workflow_row(model_name: str = "rowflow", state: str = WorkflowState.AWAITING_APPROVAL, **step_states) -> Workflow:
    """A workflow as the engine leaves it, without running anything: steps before the current one
    succeeded, the current one in ``state``'s step state (approval when awaiting), the rest pending.
    ``step_states`` overrides single steps (``backtest="failed"``)."""
    from orchestration.models import WorkflowStep
    from orchestration.services import STEPS

    current = {WorkflowState.AWAITING_APPROVAL: "approval", WorkflowState.FAILED: "backtest"}.get(state, "train")
    step_state = {
        WorkflowState.AWAITING_APPROVAL: StepState.AWAITING_APPROVAL,
        WorkflowState.FAILED: StepState.FAILED,
        WorkflowState.RUNNING: StepState.RUNNING,
    }.get(state, StepState.PENDING)
    wf = Workflow.objects.create(
        model_name=model_name, state=state, current_step=current, version=1,
        params={"auto_promote": True, "canary_percent": 0, "training": {}, "starter_can_manage": False},
        created_by="test", error="backtest: it broke" if state == WorkflowState.FAILED else "",
    )  # fmt: skip
    at = STEPS.index(current)
    for i, name in enumerate(STEPS):
        s = StepState.SUCCEEDED if i < at else step_state if i == at else StepState.PENDING
        WorkflowStep.objects.create(workflow=wf, position=i, name=name, state=step_states.get(name, s),
                                    error="it broke" if s == StepState.FAILED else "")  # fmt: skip
    return wf
