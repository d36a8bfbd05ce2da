"""The Telegram channel's writes: a tenant's bots (registered with their @BotFather token, which
goes to the credentials vault; Telegram told where to send updates), the chats they write to, and
linking a member's own chat without knowing its id (a one-time code sent as ``/start <code>``).

Telegram is asked first and nothing is stored when it refuses: a token it does not accept, a chat
it cannot write to. A webhook Telegram refuses (e.g. an http:// address: Telegram wants https) is
recorded on the bot (``webhook_error``): messages still go out, only commands cannot come in.
Every change is audited; the token is never logged, returned or audited."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import time

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from api.errors import ApplicationError, NotFound
from compliance.services import actor_display, audit_record

from . import telegram
from .models import TelegramBot, TelegramChat

NAME_RE = re.compile(r"^[a-z0-9][-a-z0-9_]{0,63}$")
TOKEN_RE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{10,100}$")
CHAT_ID_RE = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")
LINK_TTL_S = 600
PACE_TRIES, PACE_MAX_WAIT_S = 5, 3.0
LINK_PREFIX = "tglink"
BOTFATHER_HINT = "copy the token again from @BotFather (/mybots → your bot → API Token) and paste it whole"


def _invalid(field: str, message: str, code: str = "invalid_input", status: int = 400) -> ApplicationError:
    return ApplicationError(code, message, {field: [message]}, status=status)


def _unreachable(exc: telegram.TelegramError) -> ApplicationError:
    if exc.code == 429:
        message = f"Telegram asks us to slow down; try again in {exc.retry_after or 1:g} s."
    elif exc.code:
        message = f"Telegram answered {exc.code} ({exc.description}); try again in a moment."
    else:
        message = f"Cannot reach Telegram at {settings.TELEGRAM_API_BASE} ({exc.description}); try again later."
    return ApplicationError(
        "telegram_unreachable", message, {"telegram": {"code": exc.code, "description": exc.description}}, status=502
    )


def webhook_url(tenant, bot: TelegramBot) -> str:
    return f"{settings.TELEGRAM_WEBHOOK_BASE.rstrip('/')}/hooks/telegram/{tenant.slug}/{bot.pk}/"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def bot_token(bot: TelegramBot, purpose: str) -> str:
    """The bot's token from the vault (each read audited with ``purpose``; cached a few minutes)."""
    from .channels import secret_of

    return secret_of(bot.credential, purpose)


# --- bots ---------------------------------------------------------------------------------------------


@sensitive_variables("token")
def telegram_bot_register(*, tenant, name, token, actor) -> TelegramBot:
    """Check the token with Telegram (getMe), keep it in the vault, and point the bot's webhook at
    this tenant. Refused before anything is stored: a bad name or token, a name or bot already
    registered, a token Telegram rejects, Telegram unreachable."""
    from compliance.credentials import credential_create
    from compliance.models import Credential

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _invalid("name", "name: 1-64 of a-z, 0-9, - and _ (starting with a letter or digit).")
    token = token.strip() if isinstance(token, str) else ""
    if not TOKEN_RE.match(token):
        raise _invalid(
            "token", f"That is not a bot token (it looks like 123456789:AAH…); {BOTFATHER_HINT}.",
            "telegram_token_invalid",
        )  # fmt: skip
    credential_name = f"telegram-bot-{name}"
    if TelegramBot.objects.filter(name=name).exists() or Credential.objects.filter(name=credential_name).exists():
        raise _invalid("name", f"A bot named '{name}' exists; choose another name.", "name_taken", 409)
    try:
        me = telegram.get_me(token)
    except telegram.TelegramError as exc:
        if exc.code in (401, 404):
            raise _invalid(
                "token", f"Telegram does not accept this token ({exc.description}); {BOTFATHER_HINT}.",
                "telegram_token_invalid",
            ) from None  # fmt: skip
        raise _unreachable(exc) from None
    if not isinstance(me, dict) or not me.get("is_bot", True) or "id" not in me:
        raise _invalid("token", f"This token is not a bot's; {BOTFATHER_HINT}.", "telegram_token_invalid")
    existing = TelegramBot.objects.filter(bot_id=me["id"]).first()
    if existing is not None:
        raise _invalid(
            "token", f"@{me.get('username')} is already registered here as '{existing.name}'.", "telegram_bot_exists",
            409,
        )  # fmt: skip
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        credential = credential_create(
            name=credential_name, kind=Credential.Kind.TELEGRAM, secret=token,
            metadata={"bot_username": str(me.get("username") or "")[:200] or "unknown"}, actor=actor,
        )  # fmt: skip
        bot = TelegramBot.objects.create(
            name=name, credential=credential, bot_id=me["id"], username=str(me.get("username") or "")[:64],
            webhook_secret_sha256=secret_hash(secret), created_by=actor_display(actor),
        )  # fmt: skip
        bot.webhook_url = webhook_url(tenant, bot)
        bot.save(update_fields=["webhook_url"])
        audit_record(actor, "telegram.bot_registered", bot, {"name": name, "username": bot.username})
    _set_webhook(bot, token, secret)
    return bot


@sensitive_variables("token", "secret")
def _set_webhook(bot: TelegramBot, token: str, secret: str) -> None:
    """Tell Telegram the webhook; its refusal is kept on the bot (sending still works)."""
    try:
        telegram.set_webhook(token, bot.webhook_url, secret)
        error = ""
    except telegram.TelegramError as exc:
        error = f"{exc.code or 'no answer'}: {exc.description}"[:300]
    bot.webhook_error = error
    TelegramBot.objects.filter(pk=bot.pk).update(webhook_error=error)


@sensitive_variables("secret")
def telegram_bot_webhook_set(*, tenant, bot: TelegramBot, actor) -> TelegramBot:
    """Set the webhook again with a new secret (after fixing TELEGRAM_WEBHOOK_BASE, or when the
    API forgot it); what Telegram answered is on the bot."""
    secret = secrets.token_urlsafe(32)
    token = bot_token(bot, f"set webhook of telegram bot {bot.name}")
    with transaction.atomic():
        bot.webhook_url, bot.webhook_secret_sha256 = webhook_url(tenant, bot), secret_hash(secret)
        bot.save(update_fields=["webhook_url", "webhook_secret_sha256"])
        audit_record(actor, "telegram.webhook_set", bot, {"name": bot.name})
    _set_webhook(bot, token, secret)
    return bot


def telegram_bot_delete(*, bot: TelegramBot, actor) -> None:
    """Stop the webhook (best effort: a revoked token cannot), then forget the bot, its chats,
    their subscriptions and the token."""
    from compliance.credentials import credential_delete

    try:
        telegram.delete_webhook(bot_token(bot, f"delete webhook of telegram bot {bot.name}"))
        outcome = "deleted"
    except telegram.TelegramError as exc:
        outcome = f"{exc.code or 'no answer'}: {exc.description}"[:200]
    with transaction.atomic():
        audit_record(actor, "telegram.bot_deleted", bot, {"name": bot.name, "username": bot.username,
                                                          "webhook": outcome})  # fmt: skip
        credential = bot.credential_id
        bot.delete()
        credential_delete(credential_id=credential, actor=actor)


@sensitive_variables("token")
def paced_send(bot: TelegramBot, token: str, chat_id, text: str) -> dict:
    """sendMessage within the rates notifications keep to (per chat and per bot, shared through
    Redis): a slot a few seconds away at most is booked and waited for; a 429 Telegram still gives
    is waited out once."""
    from . import ratelimit

    limits = ratelimit.limits_for("telegram", f"telegram:{bot.pk}:{chat_id}", connection.schema_name)
    for _ in range(PACE_TRIES):
        booked, wait = ratelimit.reserve(limits, book_within=PACE_MAX_WAIT_S)
        if booked:  # the slot is ours: wait for it, then send
            time.sleep(wait)
            break
        time.sleep(PACE_MAX_WAIT_S)
    try:
        return telegram.send_message(token, chat_id, text)
    except telegram.TelegramError as exc:
        if exc.code != 429 or (exc.retry_after or 1) > PACE_MAX_WAIT_S:
            raise
        time.sleep(exc.retry_after or 1)
        return telegram.send_message(token, chat_id, text)


# --- chats --------------------------------------------------------------------------------------------


def _member_ids(tenant) -> set[int]:
    from tenants.models import Membership

    return set(Membership.objects.filter(tenant=tenant, user__is_active=True).values_list("user_id", flat=True))


def _chat_title(chat: dict) -> str:
    name = " ".join(str(chat.get(k) or "") for k in ("first_name", "last_name")).strip()
    return str(chat.get("title") or name or chat.get("username") or chat.get("id") or "")[:120]


def telegram_chat_add(*, tenant, bot: TelegramBot, chat_id, title="", user_id=None, actor) -> TelegramChat:
    """A chat the bot writes to, proven by a test message first (Telegram's refusal, e.g. "chat not
    found" or "bot was blocked by the user", is the error; nothing is stored). ``user_id``: the
    member the chat belongs to (their own subscriptions may use it; in their private chat with the
    bot, its commands act as them)."""
    if isinstance(chat_id, bool) or not isinstance(chat_id, int | str) or not CHAT_ID_RE.match(str(chat_id).strip()):
        raise _invalid("chat_id", "chat_id is a chat's number (e.g. 123456789 or -1001234567890) or @channelname.")
    chat_id = str(chat_id).strip()
    if title is not None and (not isinstance(title, str) or len(title) > 120):
        raise _invalid("title", "title is a text of at most 120 characters.")
    if user_id is not None:
        if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id not in _member_ids(tenant):
            raise _invalid("user_id", "user_id is the id of an active member of this tenant (or null).")
    if TelegramChat.objects.filter(bot=bot, chat_id=chat_id).exists():
        raise _invalid("chat_id", f"@{bot.username} already writes to chat {chat_id}.", "telegram_chat_exists", 409)
    token = bot_token(bot, f"test message of telegram bot {bot.name}")
    text = f"✅ {tenant.name}: this chat will receive notifications from @{bot.username}."
    try:
        sent = paced_send(bot, token, chat_id, text)
    except telegram.TelegramError as exc:
        if exc.code in (400, 403):
            raise ApplicationError(
                "telegram_chat_unreachable",
                f'@{bot.username} cannot write to chat {chat_id}: Telegram says "{exc.description}". The person '
                f"(or a group admin) must first open @{bot.username} and press Start, or add it to the group.",
                {"chat_id": [exc.description], "telegram": {"code": exc.code, "description": exc.description}},
            ) from None
        raise _unreachable(exc) from None
    real = (sent or {}).get("chat") or {}
    if real.get("id") is not None:
        chat_id = str(real["id"])  # @channelname becomes the channel's number
        if TelegramChat.objects.filter(bot=bot, chat_id=chat_id).exists():
            raise _invalid("chat_id", f"@{bot.username} already writes to this chat.", "telegram_chat_exists", 409)
    with transaction.atomic():
        chat = TelegramChat.objects.create(
            bot=bot, chat_id=chat_id, title=(title or _chat_title(real))[:120], user_id=user_id,
            verified_at=timezone.now(), created_by=actor_display(actor),
        )  # fmt: skip
        audit_record(actor, "telegram.chat_added", chat, {"bot": bot.name, "chat": chat_id, "user_id": user_id})
    return chat


def telegram_chat_delete(*, chat: TelegramChat, actor) -> None:
    """Forget a chat (its subscriptions go with it)."""
    with transaction.atomic():
        audit_record(actor, "telegram.chat_deleted", chat, {"bot": chat.bot.name, "chat": chat.chat_id,
                                                            "user_id": chat.user_id})  # fmt: skip
        chat.delete()


# --- linking a member's own chat --------------------------------------------------------------------


def _redis():
    from tenants.resolution import redis_client

    return redis_client()


def _link_key(code: str) -> str:
    return f"{LINK_PREFIX}:{connection.schema_name}:{code}"


def telegram_link_code_issue(*, bot: TelegramBot, user_id: int, actor) -> dict:
    """A one-time code (10 minutes) the member sends to the bot as ``/start <code>``; the deep link
    opens the bot with it filled in."""
    code = secrets.token_urlsafe(12)  # 16 of A-Z a-z 0-9 _ -: what a /start parameter allows
    _redis().set(_link_key(code), json.dumps({"bot": bot.pk, "user_id": user_id}), ex=LINK_TTL_S)
    audit_record(actor, "telegram.link_requested", bot, {"bot": bot.name, "user_id": user_id})
    return {
        "code": code,
        "bot": bot.pk,
        "username": bot.username,
        "deep_link": f"https://t.me/{bot.username}?start={code}",
        "command": f"/start {code}",
        "expires_at": timezone.now() + dt.timedelta(seconds=LINK_TTL_S),
    }


def telegram_link_redeem(*, bot: TelegramBot, code: str, chat: dict, from_user: dict) -> TelegramChat | None:
    """``/start <code>`` arrived in ``chat``: link it to the member who asked for the code (once;
    only a private chat, so that nobody else in a group speaks as them). None: no such code."""
    if not code or len(code) > 64:
        return None
    raw = _redis().getdel(_link_key(code))
    if raw is None:
        return None
    data = json.loads(raw)
    if data.get("bot") != bot.pk:
        return None
    user_id = int(data["user_id"])
    chat_id = str(chat.get("id"))
    actor = f"user:{user_id}"
    with transaction.atomic():
        row = TelegramChat.objects.select_for_update().filter(bot=bot, chat_id=chat_id).first()
        if row is None:
            row = TelegramChat.objects.create(
                bot=bot, chat_id=chat_id, title=_chat_title(chat), user_id=user_id, verified_at=timezone.now(),
                created_by=actor,
            )  # fmt: skip
        else:
            row.user_id, row.verified_at = user_id, timezone.now()
            row.title = row.title or _chat_title(chat)
            row.save(update_fields=["user_id", "verified_at", "title"])
        audit_record(actor, "telegram.chat_linked", row, {"bot": bot.name, "chat": chat_id, "user_id": user_id,
                                                         "telegram_user": from_user.get("id")})  # fmt: skip
    return row


# --- selectors ------------------------------------------------------------------------------------------


def telegram_bot_list() -> QuerySet[TelegramBot]:
    return TelegramBot.objects.all()


def telegram_bot_get(*, pk: int) -> TelegramBot:
    bot = TelegramBot.objects.filter(pk=pk).select_related("credential").first()
    if bot is None:
        raise NotFound("telegram_bot", {"bot_id": pk})
    return bot


def telegram_chat_list(*, user_id: int | None = None, is_admin: bool = False) -> QuerySet[TelegramChat]:
    """Every chat (admins), or the chats linked to ``user_id``."""
    rows = TelegramChat.objects.select_related("bot").order_by("bot__name", "id")
    return rows if is_admin else rows.filter(user_id=user_id)


def telegram_chat_get(*, pk: int) -> TelegramChat:
    chat = TelegramChat.objects.filter(pk=pk).select_related("bot").first()
    if chat is None:
        raise NotFound("telegram_chat", {"chat_id": pk})
    return chat
