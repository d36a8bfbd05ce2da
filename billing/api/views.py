from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import NotFound
from api.schema import ERRORS
from tenants.permissions import MANAGE, READ, IsStaff

from .. import services
from ..models import Invoice


class InvoiceSerializer(serializers.ModelSerializer):
    total = serializers.DecimalField(max_digits=16, decimal_places=2, coerce_to_string=True)

    class Meta:
        model = Invoice
        fields = ("id", "number", "plan", "period_start", "period_end", "currency", "lines", "total", "status",
                  "issued_at", "due_at", "paid_at")  # fmt: skip


class BillingApi(APIView):
    """The tenant's subscription (plan, status, period) and its invoices."""

    access = {"GET": READ}

    class OutputSerializer(serializers.Serializer):
        plan = serializers.CharField()
        price = serializers.DecimalField(max_digits=16, decimal_places=2, coerce_to_string=True)
        currency = serializers.CharField()
        status = serializers.CharField()
        current_period_start = serializers.DateTimeField()
        current_period_end = serializers.DateTimeField()
        invoices = InvoiceSerializer(many=True)

    @extend_schema(operation_id="billing_retrieve", responses={200: OutputSerializer, **ERRORS})
    def get(self, request):
        sub = services.subscription_ensure(tenant=request.tenant)
        data = {
            "plan": sub.plan.code, "price": sub.plan.price, "currency": sub.plan.currency, "status": sub.status,
            "current_period_start": sub.current_period_start, "current_period_end": sub.current_period_end,
            "invoices": Invoice.objects.filter(tenant=request.tenant)[:24],
        }  # fmt: skip
        return Response(self.OutputSerializer(data).data)


class PlanChangeApi(APIView):
    """Move the tenant to another plan now (owners and admins); its limits apply to the next request."""

    access = {"POST": MANAGE}

    class InputSerializer(serializers.Serializer):
        plan = serializers.CharField(max_length=32)

    @extend_schema(
        operation_id="billing_plan_change", request=InputSerializer, responses={200: OpenApiTypes.OBJECT, **ERRORS}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub = services.subscription_change(tenant=request.tenant, plan=data.validated_data["plan"], actor=request.user)
        return Response({"plan": sub.plan.code, "status": sub.status})


class InvoicePayApi(APIView):
    """Start paying an open invoice: the payment provider's checkout (``redirect_url``)."""

    access = {"POST": MANAGE}

    @extend_schema(operation_id="billing_invoice_pay", request=None, responses={201: OpenApiTypes.OBJECT, **ERRORS})
    def post(self, request, invoice_id):
        invoice = Invoice.objects.filter(tenant=request.tenant, pk=invoice_id).select_related("tenant").first()
        if invoice is None:
            raise NotFound("invoice")
        payment = services.payment_start(invoice=invoice, actor=request.user)
        return Response(
            {"order_id": payment.order_id, "redirect_url": payment.redirect_url, "token": payment.token,
             "amount": str(payment.gross_amount), "currency": invoice.currency},
            status=201,
        )  # fmt: skip


class MidtransNotificationApi(APIView):
    """Midtrans' HTTP notification (public: no tenant, no credentials; the SHA-512 signature and
    the gateway's own status record decide). 200 once handled (applied, or a duplicate/out-of-order
    one that changes nothing); 401 for a bad signature, 404 for an unknown order."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(operation_id="billing_midtrans_notification", request=OpenApiTypes.OBJECT,
                   responses={200: OpenApiTypes.OBJECT, **ERRORS})  # fmt: skip
    def post(self, request):
        payload = request.data if isinstance(request.data, dict) else {}
        note = services.notification_receive(payload=payload, remote_addr=request.META.get("REMOTE_ADDR"))
        return Response({"outcome": note.outcome, "detail": note.detail})


class PlatformRevenueApi(APIView):
    """Staff: MRR, ARR, MRR movements, churn, ARPU, LTV, cohorts, plan mix and top accounts per month
    (``export=csv`` for the monthly table as CSV)."""

    permission_classes = [IsStaff]

    class QuerySerializer(serializers.Serializer):
        start = serializers.RegexField(r"^\d{4}-(0[1-9]|1[0-2])$", required=False, help_text="YYYY-MM")
        end = serializers.RegexField(r"^\d{4}-(0[1-9]|1[0-2])$", required=False, help_text="YYYY-MM")
        samples = serializers.BooleanField(default=True, help_text="include the demo's sample history")
        export = serializers.ChoiceField(choices=["json", "csv"], default="json")

        def validate(self, data):
            if data.get("start") and data.get("end") and data["start"] > data["end"]:
                raise serializers.ValidationError({"start": "start is after end"})
            return data

    @extend_schema(
        operation_id="platform_revenue_retrieve",
        parameters=[
            OpenApiParameter("start", str, description="first month, YYYY-MM"),
            OpenApiParameter("end", str, description="last month, YYYY-MM"),
            OpenApiParameter("samples", bool, description="include sample history (default true)"),
            OpenApiParameter("export", str, enum=["json", "csv"]),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        import datetime as dt

        from django.http import HttpResponse

        from ..revenue import revenue_csv, revenue_report

        q = self.QuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        v = q.validated_data

        def month(text):
            return dt.date(int(text[:4]), int(text[5:7]), 1) if text else None

        end = month(v.get("end"))
        if end is not None:
            end = (end + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        report = revenue_report(start=month(v.get("start")), end=end, include_samples=v["samples"])
        if v["export"] == "csv":
            response = HttpResponse(revenue_csv(report), content_type="text/csv")
            response["Content-Disposition"] = 'attachment; filename="revenue.csv"'
            return response
        return Response(_money_as_text(report))


def _money_as_text(value):
    """Decimal amounts as strings in JSON (a JSON number would be read back as a float)."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _money_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_money_as_text(v) for v in value]
    return value


class PlatformKillSwitchApi(APIView):
    """Staff: engage or lift a tenant's kill switch (``tenant``), or the platform's (no tenant)."""

    permission_classes = [IsStaff]

    class InputSerializer(serializers.Serializer):
        action = serializers.ChoiceField(choices=["engage", "lift"])
        tenant = serializers.SlugField(required=False)
        reason = serializers.CharField(max_length=300, required=False, default="")

    @extend_schema(operation_id="platform_kill_switch", request=InputSerializer,
                   responses={200: OpenApiTypes.OBJECT, **ERRORS})  # fmt: skip
    def post(self, request):
        from compliance import controls
        from tenants.models import Tenant

        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        tenant = None
        if v.get("tenant"):
            tenant = Tenant.objects.filter(slug=v["tenant"]).exclude(status=Tenant.Status.TEMPLATE).first()
            if tenant is None:
                raise NotFound("tenant")
        if v["action"] == "engage":
            switch = controls.kill_engage(tenant=tenant, reason=v["reason"], actor=request.user)
            return Response({"engaged": True, "since": switch.engaged_at, "reason": switch.reason})
        return Response({"lifted": controls.kill_lift(tenant=tenant, actor=request.user)})
