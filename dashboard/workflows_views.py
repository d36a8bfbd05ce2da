"""The dashboard's workflows (Models area): start a train → validate → backtest → compare → deploy →
approve → promote workflow, watch its steps (the page polls every 2 s while it runs), and approve,
reject, cancel or retry it. The rules live in orchestration's services; these views render and
forward, and every action is checked again here (a hidden button is not a permission)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from api.errors import ApplicationError, NotFound
from marketdata.models import Timeframe
from tenants.models import Role

from .access import can, forbidden, start_form, tenant_page
from .forms import families_field
from .views import _is_htmx

PAGE_SIZE = 20
COMPARE_ROWS = ("return_pct", "sharpe", "max_drawdown_pct", "trades", "win_rate_pct", "hit_rate")
# who may do what (the API's access: cancel/retry like training, approve/reject like deploy)
ACTIONS = {"approve": Role.ADMIN, "reject": Role.ADMIN, "cancel": Role.ANALYST, "retry": Role.ANALYST}


class WorkflowForm(forms.Form):
    model = forms.SlugField(max_length=64, help_text="The registered model; a new name creates it.")
    symbol = forms.CharField(max_length=32)
    timeframe = forms.ChoiceField(choices=Timeframe.choices, initial="1d")
    feature_set = forms.CharField(max_length=80, initial="default", help_text="name or name@version")
    n_trials = forms.IntegerField(min_value=1, max_value=2000, initial=20, label="Trials")
    families = families_field()
    canary_percent = forms.FloatField(
        min_value=0, max_value=100, required=False, label="Canary traffic %",
        help_text="Live traffic to the new version while it is the challenger. Empty: 10 % for admins, 0 for "
        "analysts (only admins route traffic).",
    )  # fmt: skip
    auto_promote = forms.BooleanField(
        required=False, initial=True, label="Promote to production at the end (after approval where required)"
    )
    allow_no_edge = forms.BooleanField(
        required=False, label="Go on even if the version does not beat its naive baselines"
    )


def _or_404(workflow_id):
    from orchestration import selectors

    try:
        return selectors.workflow_get(workflow_id=workflow_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@tenant_page()
def workflows(request):
    from features import selectors as fs
    from marketdata import selectors as md
    from orchestration import selectors, services
    from orchestration.models import WorkflowState

    form = WorkflowForm(request.POST or None)

    def start(d):
        wf, _ = services.workflow_create(
            tenant=request.tenant, actor=request.user, model_name=d["model"], symbol=d["symbol"],
            timeframe=d["timeframe"], feature_set=d["feature_set"], n_trials=d["n_trials"],
            families=d["families"] or None, canary_percent=d["canary_percent"], auto_promote=d["auto_promote"],
            allow_no_edge=d["allow_no_edge"], can_manage=can(request, Role.ADMIN),
        )  # fmt: skip
        return wf, f"Workflow started for {wf.model_name}.", reverse("dashboard:workflow", args=[wf.pk])

    response, status = start_form(request, form, start)
    if response is not None:
        return response
    state, model = request.GET.get("state", ""), request.GET.get("model", "").strip()
    problems = []
    if state and state not in WorkflowState.values:
        problems.append(f"State is one of {', '.join(WorkflowState.values)}.")
        state = ""
    page = Paginator(selectors.workflow_list(state=state or None, model_name=model or None), PAGE_SIZE).get_page(
        request.GET.get("page") or "1"
    )
    rows = []
    for wf in page.object_list:
        steps = list(wf.steps.all())
        percent = selectors.workflow_percent(steps, selectors.stored_percents(steps))
        rows.append({"wf": wf, "steps": steps, "percent": percent})
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "rows": rows,
        "state": state,
        "model": model,
        "states": WorkflowState.values,
        "problems": problems,
        "query": query.urlencode(),
        "form": form,
        "instruments": list(md.instrument_list()),
        "feature_sets": list(fs.feature_set_list(latest_only=True)),
        "can_start": can(request, Role.ANALYST),
        "is_admin": can(request, Role.ADMIN),
        "api_url": reverse("workflow-list"),
    }
    if problems and request.method == "GET":
        status = 400
    return render(request, "dashboard/workflows.html", context, status=status)


@tenant_page()
def workflow_detail(request, workflow_id):
    from orchestration import selectors
    from orchestration.models import StepState, WorkflowState

    wf = _or_404(workflow_id)
    steps = list(wf.steps.all())
    percents = selectors.live_percents(steps)
    for s in steps:
        s.live_percent = percents.get(s.pk, s.percent)
        new, prod = (s.result or {}).get("new"), (s.result or {}).get("production")
        if s.name == "compare" and isinstance(new, dict) and isinstance(prod, dict):
            keys = [s.result.get("metric"), *(k for k in COMPARE_ROWS if k != s.result.get("metric"))]
            s.compare_rows = [(k, new.get(k), prod.get(k)) for k in keys if k]
    context = {
        "wf": wf,
        "steps": steps,
        "percent": selectors.workflow_percent(steps, percents),
        "can_approve": can(request, ACTIONS["approve"]) and wf.state == WorkflowState.AWAITING_APPROVAL,
        "can_cancel": can(request, ACTIONS["cancel"]) and not wf.finished,
        "can_retry": can(request, ACTIONS["retry"]) and wf.state == WorkflowState.FAILED,
        "step_states": StepState,
        "api_url": reverse("workflow-detail", kwargs={"workflow_id": wf.pk}),
    }
    template = "dashboard/_workflow_panel.html" if _is_htmx(request) else "dashboard/workflow.html"
    return render(request, template, context)


@require_POST
@tenant_page()
def workflow_action(request, workflow_id, action: str):
    from orchestration import services

    if action not in ACTIONS:
        raise Http404("no such action")
    if not can(request, ACTIONS[action]):
        return forbidden(request, ACTIONS[action])
    wf = _or_404(workflow_id)
    comment = (request.POST.get("comment") or "").strip()[:500]
    try:
        if action == "approve":
            services.workflow_approve(workflow=wf, actor=request.user, comment=comment)
            messages.success(request, "Approved: the workflow goes on to promote the version.")
        elif action == "reject":
            services.workflow_reject(workflow=wf, actor=request.user, comment=comment)
            messages.success(request, "Rejected: production is unchanged.")
        elif action == "cancel":
            services.workflow_cancel(workflow=wf, actor=request.user)
            messages.success(request, "Workflow cancelled.")
        else:
            services.workflow_retry(workflow=wf, actor=request.user)
            messages.success(request, "Retrying from the failed step.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("dashboard:workflow", workflow_id=wf.pk)
