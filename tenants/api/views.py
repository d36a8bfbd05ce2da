from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.pagination import CreatedCursorPagination
from api.schema import ERRORS
from tenants import limits, selectors, services
from tenants.models import ApiKey, Scope
from tenants.permissions import MANAGE, READ
from tenants.resolution import KeyInfo

METRICS = ("decisions_per_day", "training_jobs_per_month", "backtest_bars_per_month")


class TenantDetailApi(APIView):
    """The tenant the request resolved to, its plan, limits and today's usage."""

    access = {"GET": READ}

    class OutputSerializer(serializers.Serializer):
        slug = serializers.CharField()
        name = serializers.CharField()
        schema_name = serializers.CharField()
        plan = serializers.CharField(source="plan.code")
        limits = serializers.DictField(source="plan.limits")
        usage = serializers.DictField(help_text="per quota: used, limit (null: unlimited), resets_at")
        created_at = serializers.DateTimeField()

    @extend_schema(operation_id="tenant_retrieve", responses={200: OutputSerializer, **ERRORS})
    def get(self, request):
        tenant = request.tenant
        tenant.usage = {}
        for metric in METRICS:
            u = limits.usage_get(tenant, metric)
            tenant.usage[metric] = {"used": u.used, "limit": u.limit, "resets_at": limits.period_end(metric)}
        return Response(self.OutputSerializer(tenant).data)


class ApiKeyOutputSerializer(serializers.ModelSerializer):
    # None when an API key (not a person) created the key
    created_by = serializers.EmailField(source="created_by.email", default=None, read_only=True, allow_null=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = (
            "id",
            "name",
            "prefix",
            "scopes",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
            "is_active",
        )


class ApiKeyListCreateApi(APIView):
    """List the tenant's API keys (never their secrets) or create one (the key is shown once)."""

    access = {"GET": MANAGE, "POST": MANAGE}
    pagination_class = CreatedCursorPagination  # also documents the page envelope and cursor parameters

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=80)
        scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), min_length=1)

    class CreatedSerializer(ApiKeyOutputSerializer):
        key = serializers.CharField(read_only=True, help_text="The full key. Shown only in this response.")

        class Meta(ApiKeyOutputSerializer.Meta):
            fields = ApiKeyOutputSerializer.Meta.fields + ("key",)

    @extend_schema(operation_id="api_keys_list", responses={200: ApiKeyOutputSerializer(many=True), **ERRORS})
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.api_key_list(tenant=request.tenant), request, view=self)
        return paginator.get_paginated_response(ApiKeyOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="api_keys_create", request=InputSerializer, responses={201: CreatedSerializer, **ERRORS}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, raw = services.api_key_create(tenant=request.tenant, created_by=request.user, **data.validated_data)
        key.key = raw
        return Response(self.CreatedSerializer(key).data, status=201, headers={"Cache-Control": "no-store"})


class ApiKeyDetailApi(APIView):
    access = {"GET": MANAGE, "DELETE": MANAGE}

    @extend_schema(operation_id="api_keys_retrieve", responses={200: ApiKeyOutputSerializer, **ERRORS})
    def get(self, request, key_id: int):
        return Response(ApiKeyOutputSerializer(selectors.api_key_get(tenant=request.tenant, key_id=key_id)).data)

    @extend_schema(
        operation_id="api_keys_revoke",
        responses={200: ApiKeyOutputSerializer, **ERRORS},
        description="Revoke a key. It stops working in every process within about a second.",
    )
    def delete(self, request, key_id: int):
        key = services.api_key_revoke(tenant=request.tenant, key_id=key_id, actor=request.user)
        return Response(ApiKeyOutputSerializer(key).data)


class WsTicketApi(APIView):
    """A one-use ticket for a WebSocket handshake from a browser (which can't send an API key
    header): connect to ``ws/...?ticket=<ticket>`` within 60 seconds."""

    access = {"POST": READ}

    class OutputSerializer(serializers.Serializer):
        ticket = serializers.CharField()
        expires_in = serializers.IntegerField()

    @extend_schema(operation_id="ws_tickets_create", request=None, responses={201: OutputSerializer, **ERRORS})
    def post(self, request):
        from tenants.channels import TICKET_TTL, ws_ticket_issue

        key = request.auth if isinstance(request.auth, KeyInfo) else None
        user_id = None if key is not None else getattr(request.user, "pk", None)
        ticket = ws_ticket_issue(tenant_id=request.tenant.pk, user_id=user_id, key_id=key.id if key else None)
        return Response({"ticket": ticket, "expires_in": TICKET_TTL}, status=201, headers={"Cache-Control": "no-store"})


class KillSwitchApi(APIView):
    """The tenant's kill switch (MiFID II RTS 6 Art. 12). ``GET``: whether trading is halted (by
    this tenant's switch or the platform's). ``POST {"reason"}``: halt now — no decision is made,
    REST or live stream, in any process within 100 ms (admins). ``DELETE``: lift — platform staff
    only; a tenant cannot lift its own."""

    access = {"GET": READ, "POST": MANAGE}

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=300)

    @staticmethod
    def _state(tenant) -> dict:
        from compliance import controls
        from tenants.models import KillSwitch

        own = KillSwitch.objects.filter(tenant=tenant, lifted_at=None).first()
        platform = KillSwitch.objects.filter(tenant=None, lifted_at=None).first()
        return {
            "halted": controls.kill_state(tenant.schema_name) is not None or bool(own or platform),
            "tenant": None if own is None else {"reason": own.reason, "engaged_by": own.engaged_by,
                                                "since": own.engaged_at},
            "platform": None if platform is None else {"reason": platform.reason, "since": platform.engaged_at},
        }  # fmt: skip

    @extend_schema(operation_id="kill_switch_retrieve", responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request):
        return Response(self._state(request.tenant))

    @extend_schema(
        operation_id="kill_switch_engage", request=InputSerializer, responses={201: OpenApiTypes.OBJECT, **ERRORS}
    )
    def post(self, request):
        from compliance import controls

        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        controls.kill_engage(tenant=request.tenant, reason=data.validated_data["reason"], actor=request.user)
        return Response(self._state(request.tenant), status=201)
