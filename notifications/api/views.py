"""``/api/v1/notifications/``: subscriptions, webhook endpoints, the in-app notification centre,
the delivery log and its dead letters.

Members manage their own subscriptions (their in-app centre, their own e-mail address, a Telegram
chat linked to them); tenant-wide subscriptions, webhook endpoints, the whole delivery log and
retries are for admins (API keys: the admin scope)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError, NotFound
from api.pagination import CreatedCursorPagination
from api.params import query_flag
from api.schema import ERRORS
from tenants.authentication import ApiKeyPrincipal
from tenants.models import ROLE_RANK, Role, Scope
from tenants.permissions import MANAGE, READ, Access, membership_role

from .. import selectors, services
from ..events import EVENTS, SUBSCRIBABLE
from ..models import Channel, Delivery, Subscription, WebhookEndpoint

NO_STORE = {"Cache-Control": "no-store"}
# members (viewer and up) manage their own subscriptions; API keys need the admin scope
OWN = Access(role=Role.VIEWER, scope=Scope.ADMIN)


def is_admin(request) -> bool:
    if isinstance(request.user, ApiKeyPrincipal):
        return Scope.ADMIN in request.user.key.scopes
    role = membership_role(request)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[Role.ADMIN]


def user_id_of(request) -> int | None:
    return None if isinstance(request.user, ApiKeyPrincipal) else request.user.pk


# --- serializers -----------------------------------------------------------------------------------


class SubscriptionSerializer(serializers.ModelSerializer):
    email = serializers.CharField(read_only=True, help_text="email channel: the address; else empty")
    tenant_wide = serializers.SerializerMethodField()
    target = serializers.SerializerMethodField()

    class Meta:
        model = Subscription
        fields = (
            "id", "name", "tenant_wide", "user_id", "events", "channel", "telegram_chat", "webhook", "email", "target",
            "min_confidence", "symbols", "actions", "quiet_start", "quiet_end", "timezone", "digest", "enabled",
            "created_by", "created_at",
        )  # fmt: skip
        read_only_fields = fields

    def get_tenant_wide(self, obj) -> bool:
        return obj.user_id is None

    def get_target(self, obj) -> str:
        return obj.target if obj.channel != Channel.INAPP or obj.user_id else "inapp:all members"


class SubscriptionInputSerializer(serializers.Serializer):
    """Validated by the service (one place for the rules): this documents the body."""

    name = serializers.CharField(required=False, allow_blank=True, max_length=120, help_text="empty: no name")
    tenant_wide = serializers.BooleanField(
        required=False, help_text="admins: for the whole tenant (in-app: every member)"
    )
    events = serializers.ListField(child=serializers.CharField(), help_text=f"of: {', '.join(SUBSCRIBABLE)}")
    channel = serializers.CharField(help_text=f"one of: {', '.join(Channel.values)}")
    telegram_chat = serializers.IntegerField(required=False, help_text="telegram: a registered chat's id")
    webhook = serializers.IntegerField(required=False, help_text="webhook: an endpoint's id")
    email = serializers.CharField(required=False, help_text="email: default your own address")
    min_confidence = serializers.FloatField(required=False, allow_null=True, help_text="decision: at least this")
    symbols = serializers.ListField(child=serializers.CharField(), required=False, help_text="decision: empty = all")
    actions = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="decision: default BUY, SELL"
    )
    quiet_start = serializers.CharField(required=False, allow_null=True, help_text="HH:MM local")
    quiet_end = serializers.CharField(required=False, allow_null=True, help_text="HH:MM local")
    timezone = serializers.CharField(required=False, help_text="IANA name, default UTC")
    digest = serializers.CharField(required=False, help_text="off, hourly or daily")
    enabled = serializers.BooleanField(required=False)


class SubscriptionTestSerializer(serializers.Serializer):
    delivery = serializers.IntegerField()
    status = serializers.CharField()
    error = serializers.CharField()


class WebhookSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = ("id", "name", "url", "enabled", "created_by", "created_at")
        read_only_fields = fields


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(help_text="The signing secret: shown this once. Verify X-ATI-Signature with it.")

    class Meta(WebhookSerializer.Meta):
        fields = (*WebhookSerializer.Meta.fields, "secret")
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    event_type = serializers.CharField(source="event.type")
    event_id = serializers.IntegerField(source="event.id")

    class Meta:
        model = Delivery
        fields = (
            "id", "event_id", "event_type", "subscription", "channel", "target", "idempotency_key", "status",
            "attempts", "manual_retries", "next_attempt_at", "due_at", "last_error", "note", "provider_id",
            "duration_ms", "latency_ms", "created_at", "sent_at",
        )  # fmt: skip
        read_only_fields = fields


class InAppSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField()
    url = serializers.CharField()
    severity = serializers.CharField()
    created_at = serializers.DateTimeField()
    read = serializers.BooleanField()


class InboxReadSerializer(serializers.Serializer):
    marked_read = serializers.IntegerField()
    unread = serializers.IntegerField()
    at = serializers.DateTimeField()


class EventTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    severity = serializers.CharField()


# --- subscriptions ---------------------------------------------------------------------------------


class EventTypeListApi(APIView):
    access = {"GET": READ}

    @extend_schema(operation_id="notifications_event_types", responses={200: EventTypeSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response([{"name": n, "label": EVENTS[n].label, "severity": EVENTS[n].severity} for n in SUBSCRIBABLE])


class SubscriptionListCreateApi(APIView):
    """``GET``: your subscriptions and the tenant's (admins: everyone's). ``POST``: subscribe."""

    access = {"GET": OWN, "POST": OWN}
    pagination_class = CreatedCursorPagination

    @extend_schema(
        operation_id="notifications_subscriptions_list", responses={200: SubscriptionSerializer(many=True), **ERRORS}
    )
    def get(self, request):
        rows = selectors.subscriptions_visible(user_id=user_id_of(request), is_admin=is_admin(request))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(SubscriptionSerializer(page, many=True).data)

    @extend_schema(
        operation_id="notifications_subscriptions_create",
        request=SubscriptionInputSerializer,
        responses={201: SubscriptionSerializer, **ERRORS},
    )
    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        if not isinstance(request.data, dict):
            raise ApplicationError("invalid_input", "Send a JSON object.", {})
        tenant_wide = data.get("tenant_wide", user_id_of(request) is None)
        if not isinstance(tenant_wide, bool):
            raise ApplicationError(
                "invalid_input", "tenant_wide is true or false.", {"tenant_wide": ["Not a boolean."]}
            )
        body = {k: v for k, v in data.items() if k != "tenant_wide"}
        sub = services.subscription_create(
            data=body,
            user_id=user_id_of(request),
            tenant_wide=tenant_wide,
            is_admin=is_admin(request),
            actor=request.user,
        )
        return Response(SubscriptionSerializer(sub).data, status=201)


def _own_subscription(request, pk: int) -> Subscription:
    sub = services.subscription_get(pk=pk)
    if not is_admin(request) and sub.user_id != user_id_of(request):
        if sub.user_id is None:
            raise ApplicationError(
                "insufficient_role", "Tenant-wide subscriptions are managed by tenant admins.",
                {"required_role": "admin"}, status=403,
            )  # fmt: skip
        raise NotFound("subscription", {"subscription_id": pk})  # another member's: not yours to see
    return sub


class SubscriptionDetailApi(APIView):
    access = {"GET": OWN, "PATCH": OWN, "DELETE": OWN}

    @extend_schema(
        operation_id="notifications_subscriptions_retrieve", responses={200: SubscriptionSerializer, **ERRORS}
    )
    def get(self, request, subscription_id: int):
        return Response(SubscriptionSerializer(_own_subscription(request, subscription_id)).data)

    @extend_schema(
        operation_id="notifications_subscriptions_update",
        request=SubscriptionInputSerializer(partial=True),
        responses={200: SubscriptionSerializer, **ERRORS},
    )
    def patch(self, request, subscription_id: int):
        sub = _own_subscription(request, subscription_id)
        if not isinstance(request.data, dict):
            raise ApplicationError("invalid_input", "Send a JSON object.", {})
        sub = services.subscription_update(
            sub=sub, data=dict(request.data), is_admin=is_admin(request), actor=request.user
        )
        return Response(SubscriptionSerializer(sub).data)

    @extend_schema(
        operation_id="notifications_subscriptions_delete",
        responses={204: OpenApiResponse(description="Gone."), **ERRORS},
    )
    def delete(self, request, subscription_id: int):
        services.subscription_delete(sub=_own_subscription(request, subscription_id), actor=request.user)
        return Response(status=204)


class SubscriptionTestApi(APIView):
    """Send a test message to the subscription's target now; the answer says whether it arrived."""

    access = {"POST": OWN}

    @extend_schema(
        operation_id="notifications_subscriptions_test",
        request=None,
        responses={200: SubscriptionTestSerializer, **ERRORS},
    )
    def post(self, request, subscription_id: int):
        sub = _own_subscription(request, subscription_id)
        if sub.channel == Channel.INAPP and sub.user_id is None:
            target = f"inapp:{user_id_of(request)}" if user_id_of(request) else None
            if target is None:
                raise ApplicationError("invalid_input", "An API key has no notification centre to test.", {})
        else:
            target = sub.target
        d = services.test_send(channel=sub.channel, target=target, subscription=sub, actor=request.user)
        return Response({"delivery": d.pk, "status": d.status, "error": d.last_error})


# --- webhooks ----------------------------------------------------------------------------------------


class WebhookListCreateApi(APIView):
    access = {"GET": MANAGE, "POST": MANAGE}
    pagination_class = CreatedCursorPagination

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=64, help_text="a-z, 0-9, - and _")
        url = serializers.CharField(max_length=500)

    @extend_schema(operation_id="notifications_webhooks_list", responses={200: WebhookSerializer(many=True), **ERRORS})
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(WebhookEndpoint.objects.all(), request, view=self)
        return paginator.get_paginated_response(WebhookSerializer(page, many=True).data)

    @extend_schema(
        operation_id="notifications_webhooks_create",
        request=InputSerializer,
        responses={201: WebhookCreatedSerializer, **ERRORS},
        description="The response holds the signing secret, this once.",
    )
    def post(self, request):
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        endpoint, secret = services.webhook_create(**s.validated_data, actor=request.user)
        return Response({**WebhookSerializer(endpoint).data, "secret": secret}, status=201, headers=NO_STORE)


def _webhook(pk: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(pk=pk).first()
    if endpoint is None:
        raise NotFound("webhook", {"webhook_id": pk})
    return endpoint


class WebhookDetailApi(APIView):
    access = {"GET": MANAGE, "PATCH": MANAGE, "DELETE": MANAGE}

    class InputSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=500, required=False)
        enabled = serializers.BooleanField(required=False)

    @extend_schema(operation_id="notifications_webhooks_retrieve", responses={200: WebhookSerializer, **ERRORS})
    def get(self, request, webhook_id: int):
        return Response(WebhookSerializer(_webhook(webhook_id)).data)

    @extend_schema(
        operation_id="notifications_webhooks_update",
        request=InputSerializer,
        responses={200: WebhookSerializer, **ERRORS},
    )
    def patch(self, request, webhook_id: int):
        endpoint = _webhook(webhook_id)
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        return Response(
            WebhookSerializer(
                services.webhook_update(endpoint=endpoint, data=s.validated_data, actor=request.user)
            ).data
        )

    @extend_schema(
        operation_id="notifications_webhooks_delete", responses={204: OpenApiResponse(description="Gone."), **ERRORS}
    )
    def delete(self, request, webhook_id: int):
        services.webhook_delete(endpoint=_webhook(webhook_id), actor=request.user)
        return Response(status=204)


class WebhookRotateApi(APIView):
    access = {"POST": MANAGE}

    @extend_schema(
        operation_id="notifications_webhooks_rotate", request=None, responses={200: WebhookCreatedSerializer, **ERRORS}
    )
    def post(self, request, webhook_id: int):
        endpoint = _webhook(webhook_id)
        secret = services.webhook_rotate(endpoint=endpoint, actor=request.user)
        return Response({**WebhookSerializer(endpoint).data, "secret": secret}, headers=NO_STORE)


# --- delivery log and dead letters ----------------------------------------------------------------


class DeliveryListApi(APIView):
    """The delivery log (admins: all; members: their own subscriptions'), newest first."""

    access = {"GET": OWN}
    pagination_class = CreatedCursorPagination

    @extend_schema(
        operation_id="notifications_deliveries_list",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=Delivery.Status.values),
            OpenApiParameter("channel", OpenApiTypes.STR, enum=Channel.values),
            OpenApiParameter("event_type", OpenApiTypes.STR),
        ],
        responses={200: DeliverySerializer(many=True), **ERRORS},
    )
    def get(self, request):
        params = request.query_params
        status, channel = params.get("status"), params.get("channel")
        if status and status not in Delivery.Status.values:
            raise ApplicationError(
                "invalid_input", f"status is one of {', '.join(Delivery.Status.values)}.", {"status": [status[:20]]}
            )
        if channel and channel not in Channel.values:
            raise ApplicationError(
                "invalid_input", f"channel is one of {', '.join(Channel.values)}.", {"channel": [channel[:20]]}
            )
        rows = selectors.deliveries(
            user_id=None if is_admin(request) else user_id_of(request), status=status, channel=channel,
            event_type=params.get("event_type"),
        )  # fmt: skip
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)


class DeliveryRetryApi(APIView):
    """Put a dead delivery back in the queue (attempts start again)."""

    access = {"POST": MANAGE}

    @extend_schema(
        operation_id="notifications_deliveries_retry", request=None, responses={202: DeliverySerializer, **ERRORS}
    )
    def post(self, request, delivery_id: int):
        d = services.delivery_retry(delivery_id=delivery_id, actor=request.user)
        return Response(DeliverySerializer(d).data, status=202)


# --- in-app notification centre -------------------------------------------------------------------


class InboxPagination(CreatedCursorPagination):
    """The page envelope plus ``unread``: how many of your notifications you haven't read."""

    unread = 0

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["unread"] = self.unread
        return response

    def get_paginated_response_schema(self, schema):
        out = super().get_paginated_response_schema(schema)
        out["properties"]["unread"] = {"type": "integer", "description": "your unread notifications"}
        return out


class InAppListApi(APIView):
    """Your notification centre, newest first; ``unread`` counts what you haven't read. An API key
    is not a person: its inbox is always empty."""

    access = {"GET": READ, "POST": OWN}
    pagination_class = InboxPagination

    class ReadSerializer(serializers.Serializer):
        ids = serializers.ListField(child=serializers.IntegerField(), required=False, help_text="default: all")

    @extend_schema(
        operation_id="notifications_inbox",
        parameters=[OpenApiParameter("unread", OpenApiTypes.BOOL)],
        responses={200: InAppSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        uid = user_id_of(request)
        unread = query_flag(request, "unread")
        paginator = self.pagination_class()
        if uid is None:  # an API key is no one: its inbox is empty
            rows = selectors.inbox(user_id=0).none()
        else:
            rows = selectors.inbox(user_id=uid, unread=unread)
            paginator.unread = selectors.unread_count(user_id=uid)
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response([selectors.inapp_payload(n) for n in page])

    @extend_schema(
        operation_id="notifications_inbox_read", request=ReadSerializer, responses={200: InboxReadSerializer, **ERRORS}
    )
    def post(self, request):
        s = self.ReadSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        uid = user_id_of(request)
        changed = 0 if uid is None else services.inapp_read(user_id=uid, ids=s.validated_data.get("ids"))
        unread = 0 if uid is None else selectors.unread_count(user_id=uid)
        return Response({"marked_read": changed, "unread": unread, "at": timezone.now()})
