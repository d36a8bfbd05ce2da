from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import ERRORS
from tenants.permissions import READ, IsStaff

from .. import selectors


class UsageApi(APIView):
    """The tenant's usage: billable units and requests over time, per endpoint (requests, status
    classes, error rate, latency p50/p99), per API key and user, and each quota with a forecast."""

    access = {"GET": READ}

    class QuerySerializer(serializers.Serializer):
        days = serializers.IntegerField(min_value=1, max_value=400, default=30)
        granularity = serializers.ChoiceField(choices=["day", "hour"], default="day")

        def validate(self, data):
            if data["granularity"] == "hour" and data["days"] > 7:
                raise serializers.ValidationError({"days": "hourly usage covers at most 7 days; ask for days"})
            return data

    @extend_schema(
        operation_id="usage_retrieve",
        parameters=[
            OpenApiParameter("days", int, description="how far back (1-400; hourly: 1-7)"),
            OpenApiParameter("granularity", str, enum=["day", "hour"]),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        q = self.QuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        return Response(selectors.usage_report(tenant=request.tenant, **q.validated_data))


class PerformanceApi(APIView):
    """Live performance: accuracy of the consensus, each model version and each agent per market
    day against a coin and the seed targets, paper P&L with Sharpe and drawdown, decision latency,
    calibration and stream throughput (rollups refreshed when older than a minute)."""

    access = {"GET": READ}

    class QuerySerializer(serializers.Serializer):
        days = serializers.IntegerField(min_value=1, max_value=730, default=30)

    @extend_schema(
        operation_id="analytics_performance_retrieve",
        parameters=[OpenApiParameter("days", int, description="market days back from the latest (1-730)")],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        from .. import services

        q = self.QuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        services.performance_refresh()
        return Response(selectors.performance_report(**q.validated_data))


class TenantDashboardApi(APIView):
    """Seed ``tenant-dashboard``: is everything OK and what is it doing — today's decisions,
    accuracy and paper P&L, production models (live accuracy, circuit), running jobs, firing
    alerts, quotas with forecasts, the stream, availability."""

    access = {"GET": READ}

    @extend_schema(operation_id="tenant_dashboard_retrieve", responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request):
        return Response(selectors.tenant_dashboard(tenant=request.tenant))


class PlatformUsageApi(APIView):
    """Staff: one tenant's usage (``?tenant=<slug>``), or every active tenant's totals and quota use
    this period when no tenant is named. Reading a tenant's usage is recorded in its audit trail."""

    permission_classes = [IsStaff]

    class QuerySerializer(serializers.Serializer):
        tenant = serializers.SlugField(required=False)
        days = serializers.IntegerField(min_value=1, max_value=400, default=30)

    @extend_schema(
        operation_id="platform_usage_retrieve",
        parameters=[
            OpenApiParameter("tenant", str, description="a tenant's slug (else: every tenant's totals)"),
            OpenApiParameter("days", int, description="how far back (1-400)"),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        from django_tenants.utils import schema_context

        from api.errors import NotFound
        from compliance.services import audit_record
        from tenants.models import Tenant

        q = self.QuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        v = q.validated_data
        tenants = Tenant.objects.filter(status=Tenant.Status.ACTIVE).select_related("plan").order_by("slug")
        if v.get("tenant"):
            tenant = tenants.filter(slug=v["tenant"]).first()
            if tenant is None:
                raise NotFound("tenant")
            with schema_context(tenant.schema_name):
                audit_record(request.user, "staff.usage_viewed", tenant, {"days": v["days"]})
                return Response({"tenant": tenant.slug, **selectors.usage_report(tenant=tenant, days=v["days"])})
        rows = []
        for tenant in tenants:
            with schema_context(tenant.schema_name):
                report = selectors.usage_report(tenant=tenant, days=v["days"])
            rows.append({"tenant": tenant.slug, "plan": tenant.plan.code, "totals": report["totals"],
                         "quotas": {q["quota"]: q["share"] for q in report["quotas"]}})  # fmt: skip
        return Response({"days": v["days"], "tenants": rows})
