"""Workflows over REST (seed ``orchestrate-ai-workflow``): start a train → validate → backtest →
compare → deploy → approve → promote workflow, follow its steps, and approve, reject, cancel or
retry it. Its deploy step is the registry's deploy (seed ``deploy-ai-model``)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError
from api.pagination import CreatedCursorPagination
from api.schema import ERRORS
from models_registry.api.views import TrainingRecipeSerializer
from tenants.authentication import ApiKeyPrincipal
from tenants.models import ROLE_RANK, Role
from tenants.permissions import MANAGE, READ, WRITE, membership_role

from .. import selectors, services
from ..models import StepState, Workflow, WorkflowState


class WorkflowStepSerializer(serializers.Serializer):
    name = serializers.CharField()
    position = serializers.IntegerField()
    state = serializers.ChoiceField(choices=StepState.choices)
    percent = serializers.SerializerMethodField()
    attempts = serializers.IntegerField()
    message = serializers.CharField()
    error = serializers.CharField()
    error_code = serializers.CharField()
    actor = serializers.CharField(help_text="Who approved or rejected (the approval step).")
    result = serializers.DictField(help_text="What the step found: job and backtest ids, figures, verdicts.")
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_percent(self, obj) -> int:
        return self.context.get("percents", {}).get(obj.pk, obj.percent)


class WorkflowSerializer(serializers.ModelSerializer):
    state = serializers.ChoiceField(choices=WorkflowState.choices)
    percent = serializers.SerializerMethodField()

    class Meta:
        model = Workflow
        fields = (
            "id",
            "kind",
            "model_name",
            "state",
            "current_step",
            "percent",
            "version",
            "error",
            "cancel_requested",
            "params",
            "created_by",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
        )

    def get_percent(self, obj) -> int:
        steps = list(obj.steps.all())
        percents = self.context.get("percents")
        return selectors.workflow_percent(steps, percents if percents is not None else selectors.stored_percents(steps))


class WorkflowDetailSerializer(WorkflowSerializer):
    steps = WorkflowStepSerializer(many=True, read_only=True)

    class Meta(WorkflowSerializer.Meta):
        fields = WorkflowSerializer.Meta.fields + ("steps",)


def _detail(wf: Workflow) -> dict:
    return WorkflowDetailSerializer(wf, context={"percents": selectors.live_percents(list(wf.steps.all()))}).data


def can_manage(request) -> bool:
    """An admin (or owner), or an API key (a key that may start a workflow has the admin scope)."""
    if isinstance(request.user, ApiKeyPrincipal):
        return True
    role = membership_role(request)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[Role.ADMIN]


class WorkflowListCreateApi(APIView):
    """Start a train-and-deploy workflow (seed ``orchestrate-ai-workflow``), or list workflows,
    newest first."""

    access = {"GET": READ, "POST": WRITE}
    pagination_class = CreatedCursorPagination

    class InputSerializer(TrainingRecipeSerializer):
        n_trials = serializers.IntegerField(min_value=1, default=20)
        allow_no_edge = serializers.BooleanField(
            default=False, help_text="Go on when the version does not beat its naive baselines (validate step)."
        )
        backtest_window = serializers.IntegerField(
            min_value=50, max_value=100_000, required=False, help_text="Walk-forward training window (bars)."
        )
        backtest_step = serializers.IntegerField(
            min_value=1, max_value=100_000, required=False, help_text="Bars predicted per walk-forward model."
        )
        compare_metric = serializers.ChoiceField(choices=list(services.COMPARE_METRICS), default="return_pct")
        block_if_worse = serializers.BooleanField(
            default=True, help_text="Stop when the new version backtests worse than production."
        )
        canary_percent = serializers.FloatField(
            min_value=0,
            max_value=100,
            required=False,
            help_text="Live traffic share of the challenger (default 10 for admins; analysts may only use 0).",
        )
        auto_promote = serializers.BooleanField(
            default=True, help_text="Promote to production at the end (after approval, where required)."
        )
        idempotency_key = serializers.CharField(max_length=100, required=False)

    @extend_schema(
        operation_id="workflows_list",
        parameters=[
            OpenApiParameter("state", str, required=False, enum=list(WorkflowState.values)),
            OpenApiParameter("model", str, required=False),
        ],
        responses={200: WorkflowSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        state = request.query_params.get("state") or None
        if state and state not in WorkflowState.values:
            raise ApplicationError("invalid_state", f"state is one of {', '.join(WorkflowState.values)}.")
        paginator = self.pagination_class()
        qs = selectors.workflow_list(state=state, model_name=request.query_params.get("model") or None)
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(WorkflowSerializer(page, many=True).data)

    @extend_schema(
        operation_id="workflows_create",
        request=InputSerializer,
        responses={201: WorkflowDetailSerializer, 200: WorkflowDetailSerializer, **ERRORS},
        description="Validates everything (the training request too) and queues the first step; follow it with "
        "`GET /workflows/{id}/`. The same `idempotency_key` (or `Idempotency-Key` header) returns the first "
        "workflow (200).",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        v["idempotency_key"] = v.get("idempotency_key") or request.headers.get("Idempotency-Key") or None
        wf, created = services.workflow_create(
            tenant=request.tenant, actor=request.user, model_name=v.pop("model"), can_manage=can_manage(request), **v
        )
        return Response(_detail(selectors.workflow_get(workflow_id=wf.pk)), status=201 if created else 200)


class WorkflowDetailApi(APIView):
    """A workflow and its steps: state, percent, attempts, results (figures, verdicts, child ids)."""

    access = {"GET": READ}

    @extend_schema(operation_id="workflows_retrieve", responses={200: WorkflowDetailSerializer, **ERRORS})
    def get(self, request, workflow_id):
        return Response(_detail(selectors.workflow_get(workflow_id=workflow_id)))


class DecisionInput(serializers.Serializer):
    comment = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class _ActionApi(APIView):
    action = ""

    def post(self, request, workflow_id):
        wf = selectors.workflow_get(workflow_id=workflow_id)
        if self.action in ("approve", "reject"):
            data = DecisionInput(data=request.data)
            data.is_valid(raise_exception=True)
            fn = services.workflow_approve if self.action == "approve" else services.workflow_reject
            fn(workflow=wf, actor=request.user, comment=data.validated_data["comment"])
        elif self.action == "cancel":
            services.workflow_cancel(workflow=wf, actor=request.user)
        else:
            services.workflow_retry(workflow=wf, actor=request.user)
        return Response(_detail(selectors.workflow_get(workflow_id=workflow_id)))


class WorkflowApproveApi(_ActionApi):
    """Approve a workflow awaiting approval: it goes on to promote its version (admins)."""

    access = {"POST": MANAGE}
    action = "approve"

    @extend_schema(
        operation_id="workflows_approve", request=DecisionInput, responses={200: WorkflowDetailSerializer, **ERRORS}
    )
    def post(self, request, workflow_id):
        return super().post(request, workflow_id)


class WorkflowRejectApi(_ActionApi):
    """Reject a workflow awaiting approval: production is unchanged and its canary ends (admins)."""

    access = {"POST": MANAGE}
    action = "reject"

    @extend_schema(
        operation_id="workflows_reject", request=DecisionInput, responses={200: WorkflowDetailSerializer, **ERRORS}
    )
    def post(self, request, workflow_id):
        return super().post(request, workflow_id)


class WorkflowCancelApi(_ActionApi):
    """Cancel a workflow that has not finished; a running training job or backtest is stopped."""

    access = {"POST": WRITE}
    action = "cancel"

    @extend_schema(operation_id="workflows_cancel", request=None, responses={200: WorkflowDetailSerializer, **ERRORS})
    def post(self, request, workflow_id):
        return super().post(request, workflow_id)


class WorkflowRetryApi(_ActionApi):
    """Run a failed workflow again from its failed step."""

    access = {"POST": WRITE}
    action = "retry"

    @extend_schema(operation_id="workflows_retry", request=None, responses={200: WorkflowDetailSerializer, **ERRORS})
    def post(self, request, workflow_id):
        return super().post(request, workflow_id)
