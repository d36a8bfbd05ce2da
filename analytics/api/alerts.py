"""``/api/v1/alerts/``: alert rules (the seed's built-in thresholds and the tenant's own), the metric
catalogue they watch with current values, the alert history and acknowledging a firing alert.

Reading needs viewer (API keys: read); acknowledging analyst (admin scope); writing rules admin or
owner (admin scope). Validation codes: ``unknown_metric``, ``invalid_comparator``,
``invalid_threshold``, ``invalid_severity``, ``invalid_cooldown``, ``invalid_escalation``,
``invalid_name``, ``invalid_label`` (400), ``builtin_rule_fixed`` (400: a built-in rule keeps its
metric, comparator and label), ``rule_exists`` and ``builtin_rule_undeletable`` (409),
``alert_not_firing`` (409)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from api.pagination import StrictPageSize
from api.schema import ERRORS
from tenants.permissions import MANAGE, READ, WRITE

from .. import alerts, selectors
from ..metrics import METRICS
from ..models import Alert, AlertRule, Severity


def _enum(choices, **kwargs) -> serializers.CharField:
    """A string documented as an enum but checked by the service, so a wrong value gets its own
    code (``unknown_metric``, ``invalid_comparator``, ...) rather than DRF's generic one."""

    @extend_schema_field(serializers.ChoiceField(choices=choices))
    class EnumString(serializers.CharField):
        pass

    return EnumString(**kwargs)


class AlertRuleSerializer(serializers.ModelSerializer):
    unit = serializers.SerializerMethodField(help_text="the metric's unit ('%': a fraction shown as a percentage)")

    class Meta:
        model = AlertRule
        fields = (
            "name", "label", "metric", "unit", "comparator", "threshold", "severity", "cooldown_minutes",
            "escalate_after_minutes", "enabled", "builtin", "created_by", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = fields

    def get_unit(self, rule) -> str:
        metric = METRICS.get(rule.metric)
        return metric.unit if metric else ""


class AlertRuleWriteSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=120, required=False, help_text="default: the metric's label")
    metric = _enum(list(METRICS), required=False, help_text="a metric of GET /alerts/metrics/")
    comparator = _enum(AlertRule.Comparator.choices, required=False, help_text="fires above or below the threshold")
    threshold = serializers.FloatField(required=False, help_text="for '%' metrics a fraction: 0.995 is 99.5 %")
    severity = _enum(Severity.choices, required=False)
    cooldown_minutes = serializers.IntegerField(
        required=False, help_text="crossing again this soon after resolving reopens the same alert, silently (0-10080)"
    )
    escalate_after_minutes = serializers.IntegerField(
        required=False, allow_null=True,
        help_text="alert.escalated when still firing and unacknowledged this long (1-10080; null: never)",
    )  # fmt: skip
    enabled = serializers.BooleanField(required=False)


class AlertRuleCreateSerializer(AlertRuleWriteSerializer):
    name = serializers.CharField(max_length=40, help_text="a slug, unique in the tenant")
    metric = _enum(list(METRICS), help_text="a metric of GET /alerts/metrics/")
    comparator = _enum(AlertRule.Comparator.choices, help_text="fires above or below the threshold")
    threshold = serializers.FloatField(help_text="for '%' metrics a fraction: 0.995 is 99.5 %")


class AlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = Alert
        fields = (
            "id", "rule", "label", "metric", "severity", "state", "value", "threshold", "message", "started_at",
            "fired_at", "last_seen_at", "resolved_at", "reopen_count", "acknowledged_at", "acknowledged_by",
            "escalated_at",
        )  # fmt: skip
        read_only_fields = fields


class MetricSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    unit = serializers.CharField(help_text="'%': a fraction shown as a percentage")
    help = serializers.CharField()
    value = serializers.FloatField(allow_null=True, help_text="now; null: not enough data (never alerted on)")
    display = serializers.CharField()
    rules = serializers.ListField(child=serializers.CharField(), help_text="the rules watching it")


class AlertCursorPagination(StrictPageSize, CursorPagination):
    ordering = ("-id",)
    page_size_query_param = "page_size"
    max_page_size = 500


class AlertMetricListApi(APIView):
    """The metrics a rule may watch, with their current values for this tenant."""

    access = {"GET": READ}

    @extend_schema(operation_id="alert_metrics_list", responses={200: MetricSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(MetricSerializer(selectors.metric_catalogue(), many=True).data)


class AlertRuleListCreateApi(APIView):
    """``GET``: the tenant's rules, built-in first. ``POST``: a rule of the tenant's own."""

    access = {"GET": READ, "POST": MANAGE}

    @extend_schema(operation_id="alert_rules_list", responses={200: AlertRuleSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(AlertRuleSerializer(selectors.alert_rule_list(), many=True).data)

    @extend_schema(
        operation_id="alert_rules_create",
        request=AlertRuleCreateSerializer,
        responses={201: AlertRuleSerializer, **ERRORS},
    )
    def post(self, request):
        data = AlertRuleCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule = alerts.alert_rule_create(data=dict(data.validated_data), actor=request.user)
        return Response(AlertRuleSerializer(rule).data, status=201)


RULE_NAME = OpenApiParameter("rule_name", str, OpenApiParameter.PATH, description="the rule's name")


class AlertRuleDetailApi(APIView):
    """One rule. ``PATCH`` changes the fields given (a built-in rule: threshold, severity, cool-down,
    escalation, enabled); ``DELETE`` removes a tenant rule (built-in ones are disabled instead)."""

    access = {"GET": READ, "PATCH": MANAGE, "DELETE": MANAGE}

    @extend_schema(
        parameters=[RULE_NAME], operation_id="alert_rules_retrieve", responses={200: AlertRuleSerializer, **ERRORS}
    )
    def get(self, request, rule_name: str):
        return Response(AlertRuleSerializer(selectors.alert_rule_get(name=rule_name)).data)

    @extend_schema(
        parameters=[RULE_NAME],
        operation_id="alert_rules_update",
        request=AlertRuleWriteSerializer,
        responses={200: AlertRuleSerializer, **ERRORS},
    )
    def patch(self, request, rule_name: str):
        data = AlertRuleWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        rule = alerts.alert_rule_update(name=rule_name, data=dict(data.validated_data), actor=request.user)
        return Response(AlertRuleSerializer(rule).data)

    @extend_schema(
        parameters=[RULE_NAME],
        operation_id="alert_rules_delete",
        responses={204: OpenApiResponse(description="Deleted; its alerts stay in the history."), **ERRORS},
    )
    def delete(self, request, rule_name: str):
        alerts.alert_rule_delete(name=rule_name, actor=request.user)
        return Response(status=204)


class AlertListApi(APIView):
    """The alert history, newest first (``cursor`` pages)."""

    access = {"GET": READ}
    pagination_class = AlertCursorPagination

    class QuerySerializer(serializers.Serializer):
        state = serializers.ChoiceField(choices=Alert.State.choices, required=False)
        rule = serializers.CharField(max_length=40, required=False)
        since = serializers.DateTimeField(required=False)

    @extend_schema(
        operation_id="alerts_list",
        parameters=[
            OpenApiParameter("state", str, enum=Alert.State.values, description="firing or resolved"),
            OpenApiParameter("rule", str, description="a rule's name"),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="alerts firing at or after this time"),
        ],
        responses={200: AlertSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        q = self.QuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.alert_list(**q.validated_data), request, view=self)
        return paginator.get_paginated_response(AlertSerializer(page, many=True).data)


class AlertDetailApi(APIView):
    access = {"GET": READ}

    @extend_schema(operation_id="alerts_retrieve", responses={200: AlertSerializer, **ERRORS})
    def get(self, request, alert_id: int):
        return Response(AlertSerializer(selectors.alert_get(alert_id=alert_id)).data)


class AlertAcknowledgeApi(APIView):
    """Someone is on it: a firing alert acknowledged is no longer escalated (idempotent)."""

    access = {"POST": WRITE}

    @extend_schema(operation_id="alerts_acknowledge", request=None, responses={200: AlertSerializer, **ERRORS})
    def post(self, request, alert_id: int):
        return Response(AlertSerializer(alerts.alert_acknowledge(alert_id=alert_id, actor=request.user)).data)
