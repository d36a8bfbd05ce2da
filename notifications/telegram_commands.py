"""What the bot answers in a chat: an update from Telegram's webhook (verified, and handled right
after Telegram got its 200, by ``notifications.api.telegram``) becomes a reply through
``sendMessage``.

A private chat linked to a member (``/start <code>``, or added by an admin for them) acts as that
member, with their current role in the tenant: ``/status``, ``/decisions`` and ``/pnl`` for every
member, ``/pause`` for those who may engage the kill switch in the dashboard and the API (admins).
Elsewhere (an unlinked chat, a group) only ``/help`` and ``/start`` work. Every command is audited
as ``telegram.command`` with the actor's pseudonym, the command, the chat and the outcome."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from compliance.services import audit_record
from tenants.models import ROLE_RANK, Membership, Role

from . import telegram, telegram_services
from .models import TelegramBot, TelegramChat

log = logging.getLogger(__name__)
DASHBOARD_PATH = "/app/notifications/telegram/"
PAUSE_ROLE = Role.ADMIN  # as tenants.api.views.KillSwitchApi (POST: MANAGE) and the dashboard's kill-switch page


@dataclass
class Context:
    bot: TelegramBot
    tenant: object
    chat: dict  # Telegram's chat
    from_user: dict
    args: str
    linked: TelegramChat | None  # the chat acting as a member, if it does
    role: str | None = None  # that member's role now

    @property
    def actor(self) -> str:
        if self.linked is not None and self.linked.user_id:
            return f"user:{self.linked.user_id}"
        return f"telegram:{self.from_user.get('id', '?')}"


def _dashboard() -> str:
    from django.conf import settings

    return settings.PUBLIC_BASE_URL.rstrip("/") + DASHBOARD_PATH


def _fmt_money(value: float) -> str:
    return f"{value:+,.2f}"


def _ago(when: dt.datetime, now: dt.datetime) -> str:
    seconds = int((now - when).total_seconds())
    if seconds < 90:
        return f"{max(seconds, 0)} s ago"
    if seconds < 5400:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


# --- the commands -------------------------------------------------------------------------------------


def cmd_help(ctx: Context) -> tuple[str, str]:
    lines = [f"@{ctx.bot.username} for {ctx.tenant.name}", ""]
    for name, spec in COMMANDS.items():
        lines.append(f"/{name}{spec.usage} — {spec.help}")
    if ctx.linked is None:
        lines += ["", f"This chat is not linked to a member yet: link it from the dashboard ({_dashboard()}, "
                      "“Link my Telegram”), then send /start <code> here."]  # fmt: skip
    else:
        lines += ["", f"This chat acts as your membership ({ctx.role or 'no longer a member'})."]
    return "\n".join(lines), "ok"


def cmd_start(ctx: Context) -> tuple[str, str]:
    code = ctx.args.split()[0] if ctx.args.split() else ""
    if not code:
        if ctx.linked is not None:
            return f"This chat is linked to your membership of {ctx.tenant.name}. /help lists the commands.", "ok"
        return (
            f"Hello! To get notifications and use commands, link this chat from the dashboard ({_dashboard()}, "
            "“Link my Telegram”) and send the /start <code> it shows.",
            "ok",
        )
    if ctx.chat.get("type") != "private":
        return "Link a private chat: open a chat with me and send /start <code> there (not in a group).", "not_private"
    row = telegram_services.telegram_link_redeem(bot=ctx.bot, code=code, chat=ctx.chat, from_user=ctx.from_user)
    if row is None:
        return (
            "This link code is unknown, used or expired (codes last 10 minutes). Ask for a new one in the dashboard: "
            f"{_dashboard()}",
            "bad_code",
        )
    ctx.linked, ctx.role = row, _role_of(ctx.tenant, row.user_id)
    from accounts.models import User

    email = User.objects.filter(pk=row.user_id).values_list("email", flat=True).first() or f"member {row.user_id}"
    return (
        f"Linked: this chat now acts as {email} ({ctx.role}) in {ctx.tenant.name}. Subscribe it to notifications in "
        "the dashboard; /help lists the commands.",
        "linked",
    )


def cmd_status(ctx: Context) -> tuple[str, str]:
    from compliance import controls
    from intelligence.models import Decision

    now = timezone.now()
    schema = connection.schema_name
    lines = [f"{ctx.tenant.name} — status"]
    halt = controls.kill_state(schema)
    if halt:
        who = "the platform" if halt["scope"] == "platform" else "this tenant"
        lines.append(f"Trading: HALTED by {who}'s kill switch since {halt['since'][:16].replace('T', ' ')} UTC "
                     f"({halt['reason']})")  # fmt: skip
    else:
        lines.append("Trading: running (kill switch not engaged)")
    last_stream = (
        Decision.objects.filter(source=Decision.Source.STREAM)
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    lease = _stream_lease(schema)
    if last_stream is None:
        lines.append("Stream: running, no decision yet" if lease else "Stream: no stream decisions yet")
    else:
        state = "running" if lease or now - last_stream < dt.timedelta(minutes=2) else "idle"
        lines.append(f"Stream: {state} (last decision {_ago(last_stream, now)})")
    firing = _firing_alerts()
    if firing:
        lines.append(f"Alerts firing: {len(firing)}")
        lines += [f"  • {message}" for message in firing[:5]]
    else:
        lines.append("Alerts firing: none")
    lines.append("Model in production: " + (", ".join(_production_models()) or "none deployed"))
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    counts = Decision.objects.filter(created_at__gte=midnight).aggregate(
        total=Count("id"), buy=Count("id", filter=Q(action="BUY")), sell=Count("id", filter=Q(action="SELL"))
    )
    lines.append(f"Decisions today (UTC): {counts['total']} ({counts['buy']} BUY, {counts['sell']} SELL)")
    return "\n".join(lines), "ok"


def _stream_lease(schema: str) -> bool:
    try:
        from eventbus import bus

        return any(True for _ in bus.client().scan_iter(f"lease:{schema}:decisions*", count=100))
    except Exception:  # noqa: BLE001 - the status says what it can
        return False


def _firing_alerts() -> list[str]:
    try:
        from analytics.models import Alert

        return list(Alert.objects.filter(state="firing").order_by("-id").values_list("message", flat=True)[:10])
    except Exception:  # noqa: BLE001 - alerts are optional in a status
        log.warning("telegram /status: alerts unavailable", exc_info=True)
        return []


def _production_models() -> list[str]:
    from models_registry.models import ModelAlias

    return [
        f"{name} v{version}"
        for name, version in ModelAlias.objects.filter(name="production")
        .order_by("model__name")
        .values_list("model__name", "version__version")
    ]


def cmd_decisions(ctx: Context) -> tuple[str, str]:
    from intelligence.selectors import decision_list

    rows = list(decision_list(limit=5))
    if not rows:
        return "No decisions yet.", "ok"
    today = timezone.now().date()
    lines = ["Last decisions:"]
    for d in rows:
        when = d.created_at.strftime("%H:%M:%S" if d.created_at.date() == today else "%Y-%m-%d %H:%M")
        lines.append(f"{d.action} {d.symbol} {d.confidence:.0%} · {when} UTC")
    return "\n".join(lines), "ok"


def pnl_today(now: dt.datetime | None = None) -> float | None:
    """Today's paper P&L (realised and unrealised) against where the day opened, when the ledger
    keeps its days (the halting controls); else today's realised P&L net of fees. None before any
    position."""
    from django.db.models import F, FloatField, Sum

    from intelligence.controls import ledger_totals
    from intelligence.models import Fill, LedgerDay, Position

    if not Position.objects.exists():
        return None
    now = now or timezone.now()
    today = now.date()
    days = list(LedgerDay.objects.filter(day__lte=today).order_by("-day")[:2])
    if days:
        opened = days[0].open_pnl if days[0].day == today else days[0].last_pnl
        return ledger_totals() - opened
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    row = Fill.objects.filter(at__gte=midnight).aggregate(
        n=Sum(F("realized_pnl") - F("fee"), output_field=FloatField())
    )
    return float(row["n"] or 0.0)


def cmd_pnl(ctx: Context) -> tuple[str, str]:
    from intelligence.controls import ledger_totals
    from intelligence.selectors import position_list

    today = pnl_today()
    if today is None:
        return "No paper positions yet: the ledger moves with the first BUY or SELL.", "ok"
    lines = [f"P&L today: {_fmt_money(today)}", f"P&L total: {_fmt_money(ledger_totals())}"]
    open_positions = [p for p in position_list() if p.qty]
    if not open_positions:
        lines.append("Positions: all flat")
    else:
        lines.append("Positions:")
        for p in open_positions[:10]:
            side = "long" if p.qty > 0 else "short"
            lines.append(
                f"  {p.symbol} {side} {abs(p.qty):,.6g} @ {p.avg_price:,.2f} (last {p.last_price:,.2f}, "
                f"unrealised {_fmt_money(p.unrealized_pnl)})"
            )
    return "\n".join(lines), "ok"


def cmd_pause(ctx: Context) -> tuple[str, str]:
    from accounts.models import User
    from compliance import controls
    from tenants.models import KillSwitch

    user = User.objects.get(pk=ctx.linked.user_id)
    reason = ctx.args.strip()[:250] or "paused from Telegram"
    already = KillSwitch.objects.filter(tenant=ctx.tenant, lifted_at=None).first()
    if already is not None:
        since = already.engaged_at.strftime("%Y-%m-%d %H:%M")
        return f"Trading is already halted (since {since} UTC: {already.reason}).", "already_engaged"
    controls.kill_engage(tenant=ctx.tenant, reason=f"{reason} (Telegram /pause)", actor=user)
    return (
        f"Trading halted for {ctx.tenant.name}: no decision is made, REST or stream, until platform staff lift the "
        "kill switch.",
        "engaged",
    )


@dataclass(frozen=True)
class Command:
    run: object
    help: str
    role: str | None  # None: any chat, linked or not
    usage: str = ""


COMMANDS: dict[str, Command] = {
    "help": Command(cmd_help, "what I understand", None),
    "start": Command(cmd_start, "link this chat to your membership", None, " <code>"),
    "status": Command(cmd_status, "trading, stream, alerts, model, today's decisions", Role.VIEWER),
    "decisions": Command(cmd_decisions, "the last 5 decisions", Role.VIEWER),
    "pnl": Command(cmd_pnl, "today's paper P&L and open positions", Role.VIEWER),
    "pause": Command(cmd_pause, "engage the kill switch (admins)", PAUSE_ROLE, " [reason]"),
}


# --- the update ---------------------------------------------------------------------------------------


def _role_of(tenant, user_id: int | None) -> str | None:
    if not user_id:
        return None
    return (
        Membership.objects.filter(tenant=tenant, user_id=user_id, user__is_active=True)
        .values_list("role", flat=True)
        .first()
    )


def parse(text: str, username: str) -> tuple[str, str] | None:
    """``("status", "args")`` from ``/status@ThisBot args``; None when it is not a command for us."""
    if not text.startswith("/"):
        return None
    head, _, args = text.partition(" ")
    name, _, addressed = head[1:].partition("@")
    if addressed and addressed.lower() != username.lower():
        return None  # a command for another bot in the group
    return name.lower(), args.strip()


def handle_update(bot_pk: int, update: dict) -> str:
    """Answer one update (in the bot's tenant schema); the outcome (for the log)."""
    bot = TelegramBot.objects.select_related("credential").filter(pk=bot_pk).first()
    message = update.get("message") if isinstance(update, dict) else None
    if bot is None or not isinstance(message, dict) or not isinstance(message.get("text"), str):
        return "ignored"
    chat = message.get("chat") or {}
    from_user = message.get("from") or {}
    if not isinstance(chat, dict) or chat.get("id") is None:
        return "ignored"
    parsed = parse(message["text"].strip(), bot.username)
    if parsed is None:
        if chat.get("type") == "private":
            _reply(bot, chat, "Send /help for what I understand.")
        return "not_a_command"
    name, args = parsed
    tenant = _tenant()
    row = TelegramChat.objects.filter(bot=bot, chat_id=str(chat["id"])).first()
    # a chat acts as its member only where that member alone speaks: their private chat with the bot
    acting = row if row and row.user_id and str(from_user.get("id")) == row.chat_id else None
    ctx = Context(bot=bot, tenant=tenant, chat=chat, from_user=from_user, args=args, linked=acting)
    ctx.role = _role_of(tenant, acting.user_id) if acting else None
    command = COMMANDS.get(name)
    if command is None:
        text, outcome = f"I don't know /{name[:32]}. /help lists what I understand.", "unknown"
    elif command.role is not None and acting is None:
        text, outcome = _unlinked(ctx, row), "unlinked"
    elif command.role is not None and ctx.role is None:
        text, outcome = f"You are no longer a member of {tenant.name}; this chat can't act for you.", "not_a_member"
    elif command.role is not None and ROLE_RANK[ctx.role] < ROLE_RANK[command.role]:
        text, outcome = (
            f"/{name} needs the {command.role} role; yours is {ctx.role}. Ask an admin of {tenant.name}.",
            "denied",
        )
    else:
        try:
            text, outcome = command.run(ctx)
        except Exception:  # noqa: BLE001 - the person gets an answer; the log gets the trace
            log.exception("telegram command /%s failed", name)
            text, outcome = f"/{name} failed on our side; try again in a moment.", "error"
    audit_record(ctx.actor, "telegram.command", ctx.linked or bot, {
        "command": name[:32] if command else "unknown", "chat": str(chat["id"]), "outcome": outcome,
        "bot": bot.name,
    })  # fmt: skip
    _reply(bot, chat, text)
    return outcome


def _tenant():
    from tenants.models import Tenant

    tenant = getattr(connection, "tenant", None)
    if isinstance(tenant, Tenant):
        return tenant
    return Tenant.objects.get(schema_name=connection.schema_name)


def _unlinked(ctx: Context, row: TelegramChat | None) -> str:
    if row is not None and row.user_id and ctx.chat.get("type") != "private":
        return "Commands act as a member only in that member's private chat with me."
    return (
        f"This chat is not linked to a member of {ctx.tenant.name}. Link this chat from the dashboard ({_dashboard()},"
        " “Link my Telegram”), then send /start <code> here. /help works anyway."
    )


def _reply(bot: TelegramBot, chat: dict, text: str) -> None:
    """The answer, paced like notifications (``telegram_services.paced_send``)."""
    try:
        token = telegram_services.bot_token(bot, f"reply of telegram bot {bot.name}")
        telegram_services.paced_send(bot, token, chat["id"], text)
    except telegram.TelegramError as exc:
        log.warning("telegram reply in chat %s not sent: %s", chat.get("id"), exc)
