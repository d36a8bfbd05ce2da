"""``/api/v1/notifications/telegram/``: the tenant's bots (admins register and delete them; members
see them), the chats they write to (admins add and remove them; members see their own), and
``link/``: a one-time code a member sends to the bot as ``/start <code>`` to link their own chat.

And the webhook Telegram calls, ``POST /hooks/telegram/<tenant>/<bot id>/`` (public: no tenant,
no credentials; the secret token Telegram was given proves the caller). It checks the header in
constant time (403 otherwise, nothing done), drops repeats of an update, answers 200 at once and
then the command (``telegram_commands``), in this process (not behind the notification queue)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from django.http import JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError, envelope
from api.pagination import CreatedCursorPagination
from api.schema import ERRORS, ErrorSerializer
from tenants.models import Role, Scope
from tenants.permissions import MANAGE, READ, Access

from .. import telegram_services as services
from ..models import TelegramBot, TelegramChat
from .views import NO_STORE, is_admin, user_id_of

log = logging.getLogger(__name__)
# members (viewer and up) see their own chats and ask for their own link code; keys need the admin scope
OWN = Access(role=Role.VIEWER, scope=Scope.ADMIN)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram unreachable (or answering with an error of its own) while we ask it
TELEGRAM_DOWN = OpenApiResponse(ErrorSerializer, description="telegram_unreachable")
UPDATE_SEEN_S = 86_400  # Telegram redelivers an update it got no 2xx for; each is handled once


class BotSerializer(serializers.ModelSerializer):
    telegram_id = serializers.IntegerField(source="bot_id", help_text="the bot's own Telegram id")
    webhook_ok = serializers.SerializerMethodField(help_text="Telegram accepted the webhook: commands come in")

    class Meta:
        model = TelegramBot
        fields = (
            "id", "name", "username", "telegram_id", "webhook_url", "webhook_ok", "webhook_error", "created_by",
            "created_at",
        )  # fmt: skip
        read_only_fields = fields

    def get_webhook_ok(self, obj) -> bool:
        return bool(obj.webhook_url) and not obj.webhook_error


class ChatSerializer(serializers.ModelSerializer):
    bot_username = serializers.CharField(source="bot.username")

    class Meta:
        model = TelegramChat
        fields = ("id", "bot", "bot_username", "chat_id", "title", "user_id", "verified_at", "created_by", "created_at")
        read_only_fields = fields


class LinkSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="send it to the bot as /start <code> within 10 minutes; used once")
    command = serializers.CharField(help_text="what to send: /start <code>")
    deep_link = serializers.CharField(help_text="https://t.me/<bot>?start=<code>: opens the bot with it")
    bot = serializers.IntegerField()
    username = serializers.CharField()
    expires_at = serializers.DateTimeField()


# --- bots ---------------------------------------------------------------------------------------------


@method_decorator(sensitive_post_parameters("token"), name="dispatch")
class TelegramBotListCreateApi(APIView):
    """``GET``: the tenant's bots. ``POST {name, token}``: register a bot from @BotFather (admins):
    Telegram checks the token, the vault keeps it (never shown again), the webhook is set."""

    access = {"GET": READ, "POST": MANAGE}
    pagination_class = CreatedCursorPagination

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=64, help_text="a-z, 0-9, - and _ (yours, to tell bots apart)")
        token = serializers.CharField(
            max_length=200, write_only=True, help_text="from @BotFather; write-only, kept in the credentials vault"
        )

    @extend_schema(operation_id="notifications_telegram_bots_list", responses={200: BotSerializer(many=True), **ERRORS})
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(services.telegram_bot_list(), request, view=self)
        return paginator.get_paginated_response(BotSerializer(page, many=True).data)

    @extend_schema(
        operation_id="notifications_telegram_bots_create",
        request=InputSerializer,
        responses={201: BotSerializer, **ERRORS, 502: TELEGRAM_DOWN},
        description="Errors: telegram_token_invalid (400: copy the token again from @BotFather), name_taken and "
        "telegram_bot_exists (409), telegram_unreachable (502). A webhook Telegram refused is in webhook_error; "
        "messages still go out.",
    )
    def post(self, request):
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        bot = services.telegram_bot_register(tenant=request.tenant, **s.validated_data, actor=request.user)
        return Response(BotSerializer(bot).data, status=201, headers=NO_STORE)


class TelegramBotDetailApi(APIView):
    access = {"GET": READ, "DELETE": MANAGE}

    @extend_schema(operation_id="notifications_telegram_bots_retrieve", responses={200: BotSerializer, **ERRORS})
    def get(self, request, bot_id: int):
        return Response(BotSerializer(services.telegram_bot_get(pk=bot_id)).data)

    @extend_schema(
        operation_id="notifications_telegram_bots_delete",
        description="Telegram is asked to stop the webhook first; if it cannot be (a revoked token, Telegram "
        "unreachable), the bot is deleted anyway and the audit record says what Telegram answered.",
        responses={204: OpenApiResponse(description="Gone, with its chats, their subscriptions and the token."),
                   **ERRORS},
    )  # fmt: skip
    def delete(self, request, bot_id: int):
        services.telegram_bot_delete(bot=services.telegram_bot_get(pk=bot_id), actor=request.user)
        return Response(status=204)


# --- chats --------------------------------------------------------------------------------------------


def _bot_of(value) -> TelegramBot:
    valid = isinstance(value, int) and not isinstance(value, bool)
    bot = TelegramBot.objects.filter(pk=value).first() if valid else None
    if bot is None:
        raise ApplicationError(
            "invalid_input", "Give the id of a registered bot (GET /api/v1/notifications/telegram/bots/).",
            {"bot": ["Unknown bot."]},
        )  # fmt: skip
    return bot


class TelegramChatListCreateApi(APIView):
    """``GET``: the chats (admins: all; members: those linked to them). ``POST``: a chat the bot
    writes to (admins); Telegram must accept a test message first."""

    access = {"GET": OWN, "POST": MANAGE}
    pagination_class = CreatedCursorPagination

    class InputSerializer(serializers.Serializer):
        bot = serializers.IntegerField(help_text="a registered bot's id")
        chat_id = serializers.CharField(max_length=40, help_text="the chat's number, or @channelname")
        title = serializers.CharField(max_length=120, required=False, allow_blank=True)
        user_id = serializers.IntegerField(
            required=False, allow_null=True, help_text="the member it belongs to (their subscriptions may use it)"
        )

    @extend_schema(
        operation_id="notifications_telegram_chats_list", responses={200: ChatSerializer(many=True), **ERRORS}
    )
    def get(self, request):
        rows = services.telegram_chat_list(user_id=user_id_of(request), is_admin=is_admin(request))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(ChatSerializer(page, many=True).data)

    @extend_schema(
        operation_id="notifications_telegram_chats_create",
        request=InputSerializer,
        responses={201: ChatSerializer, **ERRORS, 502: TELEGRAM_DOWN},
        description="Errors: telegram_chat_unreachable (400, with Telegram's description, e.g. 'Bad Request: chat "
        "not found'), telegram_chat_exists (409), telegram_unreachable (502). Nothing is stored on an error.",
    )
    def post(self, request):
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        v = s.validated_data
        chat = services.telegram_chat_add(
            tenant=request.tenant, bot=_bot_of(v["bot"]), chat_id=v["chat_id"], title=v.get("title", ""),
            user_id=v.get("user_id"), actor=request.user,
        )  # fmt: skip
        return Response(ChatSerializer(chat).data, status=201)


class TelegramChatDetailApi(APIView):
    access = {"DELETE": MANAGE}

    @extend_schema(
        operation_id="notifications_telegram_chats_delete",
        responses={204: OpenApiResponse(description="Gone, with its subscriptions."), **ERRORS},
    )
    def delete(self, request, chat_id: int):
        services.telegram_chat_delete(chat=services.telegram_chat_get(pk=chat_id), actor=request.user)
        return Response(status=204)


class TelegramLinkApi(APIView):
    """A one-time code (10 minutes) that links the chat it is sent from to a member: open the deep
    link (or send ``/start <code>`` to the bot). For yourself; admins may ask for another member
    (``user_id``), API keys must."""

    access = {"POST": OWN}

    class InputSerializer(serializers.Serializer):
        bot = serializers.IntegerField(required=False, help_text="the bot's id (default: the tenant's only bot)")
        user_id = serializers.IntegerField(required=False, help_text="admins: the member to link (default: you)")

    @extend_schema(
        operation_id="notifications_telegram_link",
        request=InputSerializer,
        responses={201: LinkSerializer, **ERRORS},
    )
    def post(self, request):
        s = self.InputSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        v = s.validated_data
        if "bot" in v:
            bot = _bot_of(v["bot"])
        else:
            bots = list(TelegramBot.objects.all()[:2])
            if len(bots) != 1:
                raise ApplicationError(
                    "invalid_input",
                    "Say which bot (bot: its id)." if bots else "No Telegram bot yet: an admin registers one first.",
                    {"bot": ["Required."]},
                )  # fmt: skip
            bot = bots[0]
        own = user_id_of(request)
        user_id = v.get("user_id", own)
        if user_id is None:
            raise ApplicationError(
                "invalid_input", "An API key has no member: give user_id.", {"user_id": ["Required."]}
            )  # fmt: skip
        if user_id != own:
            if not is_admin(request):
                raise ApplicationError(
                    "insufficient_role", "Members ask for their own link code; an admin may ask for another member.",
                    {"required_role": "admin"}, status=403,
                )  # fmt: skip
            if user_id not in services._member_ids(request.tenant):
                raise ApplicationError(
                    "invalid_input", "user_id is the id of an active member of this tenant.", {"user_id": ["Unknown."]}
                )
        link = services.telegram_link_code_issue(bot=bot, user_id=user_id, actor=request.user)
        return Response(link, status=201, headers=NO_STORE)


# --- the webhook Telegram calls -------------------------------------------------------------------------


def _forbidden() -> JsonResponse:
    return JsonResponse(
        envelope("forbidden", f"A missing or wrong {SECRET_HEADER} header: this is not Telegram."), status=403
    )


def _expected_secret(tenant_slug: str, bot_id: int):
    """(tenant, the bot's secret hash) or (None, None)."""
    from django_tenants.utils import tenant_context

    from tenants.models import Tenant

    tenant = Tenant.objects.filter(slug=tenant_slug, status=Tenant.Status.ACTIVE).exclude(schema_name="public").first()
    if tenant is None:
        return None, None
    with tenant_context(tenant):
        digest = TelegramBot.objects.filter(pk=bot_id).values_list("webhook_secret_sha256", flat=True).first()
    return tenant, digest or None


class _AnswerAfterwards(JsonResponse):
    """Telegram's 200 first; the command is handled once the response is out (a WSGI server calls
    ``close()`` after the last byte), in this process. A command never waits behind the
    notification queue (a chat with thousands of messages due would hold a /pause for minutes
    there), and /pause works while the notify worker is busy or down."""

    def __init__(self, work, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._work = work

    def close(self):
        try:
            self._work()
        except Exception:  # noqa: BLE001 - Telegram has its 200; the log gets the trace
            log.exception("telegram update not handled")
        finally:
            super().close()


@csrf_exempt
@require_POST
def telegram_webhook(request, tenant: str, bot_id: int):
    """Telegram's update for bot ``bot_id`` of ``tenant``: 403 unless the secret header matches
    (compared in constant time; an unknown tenant or bot is a 403 too), 400 for a body that is
    not an update, else 200 at once; the command is answered right after (``_AnswerAfterwards``)."""
    given = request.headers.get(SECRET_HEADER, "")
    tenant_row, expected = _expected_secret(tenant, bot_id)
    digest = hashlib.sha256(given.encode()).hexdigest()
    matches = hmac.compare_digest(digest, expected or "0" * 64)
    if not (given and expected and matches):
        return _forbidden()
    try:
        update = json.loads(request.body or b"null")
    except ValueError:
        update = None
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        return JsonResponse(envelope("invalid_update", "Expected a Telegram Update (JSON with update_id)."), status=400)
    if _seen(tenant_row.schema_name, bot_id, update["update_id"]):
        return JsonResponse({"ok": True, "duplicate": True})
    return _AnswerAfterwards(lambda: _handle(tenant_row, bot_id, update), {"ok": True})


def _handle(tenant, bot_id: int, update: dict) -> None:
    from django_tenants.utils import tenant_context

    from ..telegram_commands import handle_update

    with tenant_context(tenant):
        outcome = handle_update(bot_id, update)
    log.info("telegram update %s of bot %s (%s): %s", update.get("update_id"), bot_id, tenant.slug, outcome)


def _seen(schema: str, bot_id: int, update_id: int) -> bool:
    from tenants.resolution import redis_client

    try:
        return not redis_client().set(f"tgupd:{schema}:{bot_id}:{update_id}", "1", nx=True, ex=UPDATE_SEEN_S)
    except Exception:  # noqa: BLE001 - without Redis an update may be answered twice, never lost
        return False
