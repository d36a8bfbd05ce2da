"""The Telegram page of the dashboard: the tenant's bots (admins register one with its @BotFather
token and see whether Telegram accepted the webhook), the chats they write to with the member each
belongs to (admins add one; Telegram's refusal is shown as it said it), and "Link my Telegram":
a one-time code for the member's own chat. The rules live in notifications.telegram_services."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Q
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters

from api.errors import ApplicationError
from notifications import telegram_services as services
from notifications.models import TelegramBot, TelegramChat
from tenants.models import Membership, Role

from .access import can, forbidden, tenant_page
from .paging import Choice, ListSpec, Search

ADMIN_ACTIONS = ("register", "webhook", "delete_bot", "add_chat", "delete_chat")


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _chat_list_spec(bots) -> ListSpec:
    return ListSpec(
        "chats",
        "chats",
        search=Search(("title", "chat_id"), "Title or chat id"),
        filters=(
            Choice("bot", "Bot", [(str(b.pk), f"@{b.username}") for b in bots], field="bot_id"),
            Choice.either("verified", "Verified", ("yes", "Verified"), ("no", "Not verified"),
                          Q(verified_at__isnull=False)),
        ),
    )  # fmt: skip


def _context(request, **extra) -> dict:
    members = dict(
        Membership.objects.filter(tenant=request.tenant, user__is_active=True)
        .order_by("user__email")
        .values_list("user_id", "user__email")
    )
    bots = list(services.telegram_bot_list())
    is_admin = can(request, Role.ADMIN)
    listed = _chat_list_spec(bots).apply(
        request, services.telegram_chat_list(user_id=request.user.pk, is_admin=is_admin)
    )
    chats = listed.rows
    for chat in chats:
        chat.member = members.get(chat.user_id, "") if chat.user_id else ""
        chat.member_left = bool(chat.user_id) and chat.user_id not in members
    counts: dict[int, int] = {}
    for bot_id in TelegramChat.objects.values_list("bot_id", flat=True):
        counts[bot_id] = counts.get(bot_id, 0) + 1
    for bot in bots:
        bot.chat_count = counts.get(bot.pk, 0)
    error = extra.get("error")
    return {
        "bots": bots,
        "chats": listed,
        "members": sorted(members.items(), key=lambda m: m[1]),
        "can_manage": is_admin,
        "form": {},
        "error_fields": set((error.details or {}).keys()) if isinstance(error, ApplicationError) else set(),
        **extra,
    }


def _bot(request) -> TelegramBot | None:
    pk = _int(request.POST.get("bot"))
    return TelegramBot.objects.filter(pk=pk).select_related("credential").first() if pk else None


@tenant_page()
@sensitive_post_parameters("token")
def telegram(request):
    """GET: the page. POST ``action``: ``link`` (any member: a code for their own chat) or, for
    admins, ``register``, ``webhook`` (set it again), ``delete_bot``, ``add_chat``, ``delete_chat``."""
    if request.method != "POST":
        return render(request, "dashboard/notifications_telegram.html", _context(request))
    action = request.POST.get("action", "")
    if action in ADMIN_ACTIONS and not can(request, Role.ADMIN):
        return forbidden(request, Role.ADMIN)
    handler = {
        "link": _link, "register": _register, "webhook": _webhook, "delete_bot": _delete_bot, "add_chat": _add_chat,
        "delete_chat": _delete_chat,
    }.get(action)  # fmt: skip
    if handler is None:
        messages.error(request, "Unknown action.")
        return redirect("dashboard:notifications-telegram")
    try:
        return handler(request)
    except ApplicationError as exc:
        form = {k: v for k, v in request.POST.items() if k not in ("token", "csrfmiddlewaretoken")}
        context = _context(request, error=exc, form=form, failed=action)
        status = exc.status if 400 <= exc.status < 500 else 400  # Telegram unreachable: the form says so
        return render(request, "dashboard/notifications_telegram.html", context, status=status)


def _not_found(what: str) -> ApplicationError:
    return ApplicationError("not_found", f"That {what} no longer exists; reload the page.", status=404)


def _register(request):
    bot = services.telegram_bot_register(
        tenant=request.tenant, name=request.POST.get("name", "").strip(), token=request.POST.get("token", ""),
        actor=request.user,
    )  # fmt: skip
    if bot.webhook_error:
        messages.warning(
            request,
            f"@{bot.username} registered; it can send, but Telegram refused the webhook ({bot.webhook_error}): "
            "commands cannot reach it until TELEGRAM_WEBHOOK_BASE is a public https:// address.",
        )
    else:
        messages.success(request, f"@{bot.username} registered: it sends notifications and answers commands.")
    return redirect("dashboard:notifications-telegram")


def _webhook(request):
    bot = _bot(request)
    if bot is None:
        raise _not_found("bot")
    bot = services.telegram_bot_webhook_set(tenant=request.tenant, bot=bot, actor=request.user)
    if bot.webhook_error:
        messages.warning(request, f"Telegram refused the webhook of @{bot.username}: {bot.webhook_error}")
    else:
        messages.success(request, f"Telegram accepted the webhook of @{bot.username}.")
    return redirect("dashboard:notifications-telegram")


def _delete_bot(request):
    bot = _bot(request)
    if bot is None:
        raise _not_found("bot")
    services.telegram_bot_delete(bot=bot, actor=request.user)
    messages.success(request, f"@{bot.username} deleted, with its chats, their subscriptions and its token.")
    return redirect("dashboard:notifications-telegram")


def _add_chat(request):
    bot = _bot(request)
    if bot is None:
        raise ApplicationError("invalid_input", "Choose a bot.", {"bot": ["Required."]})
    user_id = _int(request.POST.get("user_id")) if request.POST.get("user_id") else None
    chat = services.telegram_chat_add(
        tenant=request.tenant, bot=bot, chat_id=request.POST.get("chat_id", "").strip(),
        title=request.POST.get("title", "").strip(), user_id=user_id, actor=request.user,
    )  # fmt: skip
    messages.success(request, f"Chat “{chat.title or chat.chat_id}” added: the test message went through.")
    return redirect("dashboard:notifications-telegram")


def _delete_chat(request):
    chat = TelegramChat.objects.filter(pk=_int(request.POST.get("chat"))).select_related("bot").first()
    if chat is None:
        raise _not_found("chat")
    services.telegram_chat_delete(chat=chat, actor=request.user)
    messages.success(request, f"Chat “{chat.title or chat.chat_id}” removed, with its subscriptions.")
    return redirect("dashboard:notifications-telegram")


def _link(request):
    bots = list(TelegramBot.objects.all()[:2])
    bot = _bot(request) if request.POST.get("bot") else (bots[0] if len(bots) == 1 else None)
    if bot is None:
        raise ApplicationError(
            "invalid_input", "Choose a bot." if bots else "No Telegram bot yet: an admin registers one first.",
            {"bot": ["Required."]},
        )  # fmt: skip
    link = services.telegram_link_code_issue(bot=bot, user_id=request.user.pk, actor=request.user)
    return render(request, "dashboard/notifications_telegram.html", _context(request, link=link))
