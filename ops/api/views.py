"""Platform staff's view of the service: ``GET /api/v1/services-health/`` (seed ``services-health``)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import ERRORS
from tenants.permissions import IsStaff

from .. import health

HEALTH_STATUSES = health.CHECK_STATUSES
FIGURE_STATUSES = health.FIGURE_STATUSES
TENANT_STATUSES = health.TENANT_STATUSES


class HealthFigureSerializer(serializers.Serializer):
    """One measured value judged against its threshold."""

    value = serializers.FloatField(allow_null=True)
    unit = serializers.CharField()
    status = serializers.ChoiceField(choices=FIGURE_STATUSES)
    warn = serializers.FloatField(allow_null=True, help_text="the warning bound (null: shown, not judged)")
    critical = serializers.FloatField(allow_null=True)
    comparison = serializers.ChoiceField(choices=["above", "below"], allow_null=True)

    class Meta:
        ref_name = "HealthFigure"


def _figure():
    return HealthFigureSerializer()


_check = inline_serializer(
    name="HealthCheck",
    fields={
        "status": serializers.ChoiceField(choices=HEALTH_STATUSES),
        "detail": serializers.CharField(help_text="what was measured or what failed, and what to do"),
        "latency_ms": serializers.FloatField(allow_null=True),
        "figures": serializers.DictField(child=_figure()),
    },
)
_threshold = inline_serializer(
    name="HealthThreshold",
    fields={
        "warn": serializers.FloatField(),
        "critical": serializers.FloatField(),
        "unit": serializers.CharField(),
        "comparison": serializers.ChoiceField(choices=["above", "below"]),
        "inclusive": serializers.BooleanField(),
        "source": serializers.CharField(help_text="the seed the bounds come from, or why ours"),
    },
)
HealthReport = inline_serializer(
    name="ServicesHealth",
    fields={
        "status": serializers.ChoiceField(choices=HEALTH_STATUSES, help_text="the worst check's"),
        "generated_at": serializers.DateTimeField(),
        "took_ms": serializers.FloatField(),
        "cached": serializers.BooleanField(help_text=f"computed within the last {health.CACHE_S:g} s and reused"),
        "checks": serializers.DictField(
            child=_check,
            help_text="postgres, redis, celery, queues, streams, channel_layer, websockets, error_rate, latency_p99, "
            "availability, tenants",
        ),
        "workers": inline_serializer(
            name="HealthWorker",
            fields={"name": serializers.CharField(), "queues": serializers.ListField(child=serializers.CharField())},
            many=True,
        ),
        "queues": inline_serializer(
            name="HealthQueue",
            fields={
                "queue": serializers.CharField(),
                "depth": serializers.IntegerField(allow_null=True),
                "consumers": serializers.ListField(child=serializers.CharField()),
                "status": serializers.ChoiceField(choices=HEALTH_STATUSES),
            },
            many=True,
        ),
        "streams": inline_serializer(
            name="HealthStreamGroup",
            fields={
                "tenant": serializers.CharField(),
                "stream": serializers.CharField(),
                "event": serializers.CharField(),
                "group": serializers.CharField(),
                "consumers": serializers.IntegerField(),
                "pending": serializers.IntegerField(help_text="read, not yet acknowledged"),
                "lag": serializers.IntegerField(allow_null=True, help_text="not yet read"),
                "lag_counted_to": serializers.IntegerField(
                    required=False, help_text="lag counted by XRANGE up to this many (Redis without XINFO lag)"
                ),
                "backlog": serializers.IntegerField(allow_null=True, help_text="lag + pending"),
                "last_delivered": serializers.CharField(allow_null=True),
                "status": serializers.ChoiceField(choices=FIGURE_STATUSES),
            },
            many=True,
        ),
        "tenants": inline_serializer(
            name="HealthTenant",
            fields={
                "tenant": serializers.CharField(),
                "name": serializers.CharField(),
                "plan": serializers.CharField(),
                "status": serializers.ChoiceField(choices=TENANT_STATUSES),
                "reasons": serializers.ListField(child=serializers.CharField()),
                "kill_switch": serializers.CharField(help_text="why trading is halted; empty when it is not"),
                "stream_backlog": _figure(),
                "error_rate": _figure(),
                "requests": serializers.IntegerField(help_text="API requests this and the previous hour"),
                "latency_p99_ms": serializers.FloatField(allow_null=True),
                "alerts_firing": serializers.IntegerField(),
                "alerts_critical": serializers.IntegerField(),
                "ws_connections": serializers.IntegerField(),
                "ws_limit": serializers.IntegerField(allow_null=True),
                "last_decision_at": serializers.DateTimeField(allow_null=True),
            },
            many=True,
        ),
        "thresholds": serializers.DictField(child=_threshold),
    },
)


class ServicesHealthApi(APIView):
    """Platform staff: PostgreSQL, Redis, Celery workers and queue depths, event-stream consumer lag,
    the channel layer, WebSocket connections, API error rate and p99, availability and each active
    tenant's status, every figure judged ok / warn / critical against the seed thresholds (a
    dependency that does not answer is ``down``, with what to do). Always 200 when asked by staff:
    the body says what is wrong. Tenants' API keys and members get 403 (the report names every
    tenant); a tenant's own view is ``GET /api/v1/tenant-dashboard/``."""

    permission_classes = [IsStaff]

    class QuerySerializer(serializers.Serializer):
        fresh = serializers.BooleanField(default=False, help_text="measure now instead of reusing a report")

    @extend_schema(
        operation_id="services_health_retrieve",
        parameters=[OpenApiParameter("fresh", bool, description=f"skip the {health.CACHE_S:g} s cache")],
        responses={200: HealthReport, **ERRORS},
    )
    def get(self, request):
        q = self.QuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        return Response(health.services_health(max_age_s=0 if q.validated_data["fresh"] else health.CACHE_S))
