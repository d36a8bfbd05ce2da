"""The Telegram channel end to end against the sandbox Bot API: registering a bot (its token
checked by Telegram and kept in the vault, the webhook set), adding chats (a test message first),
linking a member's own chat with a one-time code, the webhook and the bot's commands, and
notifications arriving in the chat. Every endpoint: happy path, bad input, wrong role, other tenant."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from compliance.credentials import credential_use
from compliance.models import AuditRecord, Credential
from notifications import delivery
from notifications.delivery import emit, fanout
from notifications.models import Delivery, Subscription, TelegramBot, TelegramChat
from notifications.services import subscription_create
from tenants.models import KillSwitch, Membership, Role

from .telegram_helpers import CHAT, OTHER_TOKEN, TOKEN, link_chat, register_bot

pytestmark = pytest.mark.django_db
BOTS = "/api/v1/notifications/telegram/bots/"
CHATS = "/api/v1/notifications/telegram/chats/"
LINK = "/api/v1/notifications/telegram/link/"


def _code(r) -> str:
    return r.json()["error"]["code"]


def _rows(fx, model, **filters):
    with schema_context(fx.tenant.schema_name):
        return list(model.objects.filter(**filters))


def _actions(fx, prefix: str = "telegram.") -> list[tuple[str, str, dict]]:
    with schema_context(fx.tenant.schema_name):
        return [
            (a.action, a.actor, a.details) for a in AuditRecord.objects.filter(action__startswith=prefix).order_by("id")
        ]


# --- bots ---------------------------------------------------------------------------------------------


def test_an_admin_registers_a_bot_its_token_goes_to_the_vault_and_the_webhook_is_set(alpha, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    r = alpha.client(role=Role.ADMIN).post(BOTS, {"name": "alerts", "token": TOKEN}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert TOKEN not in r.content.decode() and "token" not in body
    assert body["username"] == "ati_alerts_bot" and body["telegram_id"] == 123456789 and body["webhook_ok"] is True
    assert body["webhook_url"] == f"http://testserver/hooks/telegram/alpha/{body['id']}/"
    # Telegram was told the webhook and a secret; only the secret's sha256 is kept
    hook = sandbox.bots[TOKEN]
    assert hook.webhook_url == body["webhook_url"] and len(hook.secret_token) >= 32
    (bot,) = _rows(alpha, TelegramBot)
    assert bot.webhook_secret_sha256 == hashlib.sha256(hook.secret_token.encode()).hexdigest()
    with schema_context(alpha.tenant.schema_name):
        assert bot.credential.kind == Credential.Kind.TELEGRAM and TOKEN.encode() not in bytes(
            bot.credential.ciphertext
        )
        assert credential_use(bot.credential.name, "test", "test") == TOKEN
    assert [a[0] for a in _actions(alpha)] == ["telegram.bot_registered"]
    assert all(TOKEN not in str(a) for a in _actions(alpha, ""))  # nor in any audit record
    assert TOKEN not in caplog.text
    # members see the bot (to link their chat); the list is the same shape
    listed = alpha.client(role=Role.VIEWER).get(BOTS)
    assert listed.status_code == 200 and [b["id"] for b in listed.json()["results"]] == [body["id"]]
    assert alpha.client(role=Role.VIEWER).get(f"{BOTS}{body['id']}/").json()["username"] == "ati_alerts_bot"


@pytest.mark.parametrize(
    "token, code, status, asks_telegram",
    [
        ("123456789:AAHwrongwrongwrongwrongwrong", "telegram_token_invalid", 400, True),  # Telegram: 401
        ("not a token", "telegram_token_invalid", 400, False),
        ("", "invalid_input", 400, False),
    ],
)
def test_a_token_telegram_rejects_stores_nothing(alpha, sandbox, token, code, status, asks_telegram):
    r = alpha.client(role=Role.ADMIN).post(BOTS, {"name": "alerts", "token": token}, format="json")
    assert r.status_code == status and _code(r) == code, r.content
    if code == "telegram_token_invalid":
        assert "@BotFather" in r.json()["error"]["message"]
    assert bool(sandbox.calls) == asks_telegram
    assert _rows(alpha, TelegramBot) == [] and _rows(alpha, Credential) == []
    assert _actions(alpha) == [] and _actions(alpha, "credential.") == []


def test_telegram_unreachable_is_a_502_and_stores_nothing(alpha, sandbox, settings):
    sandbox.stop()
    r = alpha.client(role=Role.ADMIN).post(BOTS, {"name": "alerts", "token": TOKEN}, format="json")
    assert r.status_code == 502 and _code(r) == "telegram_unreachable", r.content
    assert settings.TELEGRAM_API_BASE in r.json()["error"]["message"]
    assert _rows(alpha, TelegramBot) == [] and _rows(alpha, Credential) == []


def test_a_webhook_telegram_refuses_is_recorded_and_messages_still_go_out(alpha, sandbox, settings):
    settings.TELEGRAM_WEBHOOK_BASE = "ftp://example.test"
    r = alpha.client(role=Role.ADMIN).post(BOTS, {"name": "alerts", "token": TOKEN}, format="json")
    assert r.status_code == 201
    body = r.json()
    assert body["webhook_ok"] is False and "An HTTPS URL must be provided" in body["webhook_error"]
    bot = TelegramBot.objects.none()
    with schema_context(alpha.tenant.schema_name):
        bot = TelegramBot.objects.get()
    chat = _add_chat(alpha, bot)
    assert chat.status_code == 201 and sandbox.texts(CHAT)[0].startswith("✅")
    # fixed: set it again (a new secret)
    settings.TELEGRAM_WEBHOOK_BASE = "http://testserver"
    from notifications.telegram_services import telegram_bot_webhook_set

    with schema_context(alpha.tenant.schema_name):
        telegram_bot_webhook_set(tenant=alpha.tenant, bot=bot, actor=alpha.users[Role.ADMIN])
        bot.refresh_from_db()
    assert bot.webhook_error == "" and sandbox.bots[TOKEN].webhook_url == bot.webhook_url


def test_a_name_or_a_bot_registered_twice_is_a_conflict(alpha, sandbox):
    register_bot(alpha)
    c = alpha.client(role=Role.ADMIN)
    r = c.post(BOTS, {"name": "alerts", "token": OTHER_TOKEN}, format="json")
    assert r.status_code == 409 and _code(r) == "name_taken"
    r = c.post(BOTS, {"name": "again", "token": TOKEN}, format="json")
    assert r.status_code == 409 and _code(r) == "telegram_bot_exists"
    assert len(_rows(alpha, TelegramBot)) == 1 and len(_rows(alpha, Credential)) == 1


@pytest.mark.parametrize("role", [Role.ANALYST, Role.VIEWER])
def test_only_admins_register_and_delete_bots(alpha, sandbox, role):
    r = alpha.client(role=role).post(BOTS, {"name": "alerts", "token": TOKEN}, format="json")
    assert r.status_code == 403 and _code(r) == "insufficient_role"
    assert sandbox.calls == []
    bot = register_bot(alpha)
    r = alpha.client(role=role).delete(f"{BOTS}{bot.pk}/")
    assert r.status_code == 403 and _code(r) == "insufficient_role"
    assert len(_rows(alpha, TelegramBot)) == 1


def test_another_tenants_bot_is_404_and_untouched(alpha, beta, sandbox):
    bot = register_bot(alpha)
    for r in (beta.client().get(f"{BOTS}{bot.pk}/"), beta.client().delete(f"{BOTS}{bot.pk}/")):
        assert r.status_code == 404 and _code(r) == "not_found"
    assert beta.client().get(BOTS).json()["results"] == []
    assert alpha.client().get(BOTS, HTTP_HOST="beta.localhost").status_code == 404
    # a key without the read scope lists nothing; chats are listed to people and admin keys
    r = alpha.client(scope="trade").get(BOTS)
    assert r.status_code == 403 and _code(r) == "insufficient_scope"
    r = alpha.client(scope="read").get(CHATS)
    assert r.status_code == 403 and _code(r) == "insufficient_scope"
    assert len(_rows(alpha, TelegramBot)) == 1 and sandbox.bots[TOKEN].webhook_url


def test_deleting_a_bot_removes_its_webhook_token_chats_and_subscriptions(alpha, sandbox):
    bot = register_bot(alpha)
    chat = _add_chat(alpha, bot, user_id=alpha.users[Role.ADMIN].pk).json()
    with schema_context(alpha.tenant.schema_name):
        _subscribe(alpha, Role.ADMIN, chat["id"])
    r = alpha.client(role=Role.ADMIN).delete(f"{BOTS}{bot.pk}/")
    assert r.status_code == 204
    assert sandbox.bots[TOKEN].webhook_url == ""
    for model in (TelegramBot, TelegramChat, Subscription, Credential):
        assert _rows(alpha, model) == []
    assert [a[0] for a in _actions(alpha)][-1] == "telegram.bot_deleted"
    assert ("credential.deleted", f"user:{alpha.users[Role.ADMIN].pk}") in [a[:2] for a in _actions(alpha, "cred")]
    assert alpha.client().get(f"{BOTS}{bot.pk}/").status_code == 404


# --- chats --------------------------------------------------------------------------------------------


def _add_chat(fx, bot, chat_id=CHAT, role=Role.ADMIN, **extra):
    return fx.client(role=role).post(CHATS, {"bot": bot.pk, "chat_id": str(chat_id), **extra}, format="json")


def test_an_admin_adds_a_chat_after_a_test_message_went_through(alpha, sandbox):
    bot = register_bot(alpha)
    analyst = alpha.users[Role.ANALYST]
    r = _add_chat(alpha, bot, user_id=analyst.pk)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["chat_id"] == str(CHAT) and body["title"] == "Ann Analyst" and body["user_id"] == analyst.pk
    assert body["verified_at"] is not None and body["bot_username"] == "ati_alerts_bot"
    (text,) = sandbox.texts(CHAT)
    assert "will receive notifications" in text and alpha.tenant.name in text
    assert [a[0] for a in _actions(alpha)][-1] == "telegram.chat_added"
    # admins see every chat, a member only theirs
    assert [c["id"] for c in alpha.client(role=Role.ADMIN).get(CHATS).json()["results"]] == [body["id"]]
    assert [c["id"] for c in alpha.client(role=Role.ANALYST).get(CHATS).json()["results"]] == [body["id"]]
    assert alpha.client(role=Role.VIEWER).get(CHATS).json()["results"] == []


def test_a_channel_name_becomes_its_number(alpha, sandbox):
    sandbox.add_chat(-1001234567890, "Signals channel", type="channel", username="ati_signals")
    sandbox.chats["@ati_signals"] = sandbox.chats["-1001234567890"]
    bot = register_bot(alpha)
    r = _add_chat(alpha, bot, chat_id="@ati_signals")
    assert r.status_code == 201 and r.json()["chat_id"] == "-1001234567890" and r.json()["title"] == "Signals channel"


@pytest.mark.parametrize(
    "setup, description",
    [
        (lambda box: None, "Bad Request: chat not found"),
        (lambda box: box.block(TOKEN, 555), "Forbidden: bot was blocked by the user"),
    ],
)
def test_a_chat_telegram_cannot_write_to_is_refused_with_its_reason_and_nothing_stored(
    alpha, sandbox, setup, description
):
    bot = register_bot(alpha)
    sandbox.add_chat(555, "Blocker") if "blocked" in description else None
    setup(sandbox)
    r = _add_chat(alpha, bot, chat_id=555)
    assert r.status_code == 400 and _code(r) == "telegram_chat_unreachable", r.content
    assert description in r.json()["error"]["message"]
    assert r.json()["error"]["details"]["telegram"]["description"] == description
    assert _rows(alpha, TelegramChat) == [] and [a[0] for a in _actions(alpha)] == ["telegram.bot_registered"]


@pytest.mark.parametrize(
    "body, code",
    [
        ({"chat_id": "not-a-chat"}, "invalid_input"),
        ({"chat_id": str(CHAT), "user_id": 10**9}, "invalid_input"),  # not a member
        ({"chat_id": str(CHAT), "bot": 10**9}, "invalid_input"),
        ({"chat_id": str(CHAT), "title": "x" * 200}, "invalid_input"),
    ],
)
def test_bad_chat_input_is_refused_before_telegram_is_asked(alpha, sandbox, body, code):
    bot = register_bot(alpha)
    before = len(sandbox.calls)
    r = alpha.client(role=Role.ADMIN).post(CHATS, {"bot": bot.pk, **body}, format="json")
    assert r.status_code == 400 and _code(r) == code, r.content
    assert len(sandbox.calls) == before and _rows(alpha, TelegramChat) == []


def test_a_chat_twice_is_a_conflict(alpha, sandbox):
    bot = register_bot(alpha)
    assert _add_chat(alpha, bot).status_code == 201
    r = _add_chat(alpha, bot)
    assert r.status_code == 409 and _code(r) == "telegram_chat_exists"


def test_chats_wrong_role_and_other_tenant(alpha, beta, sandbox):
    bot = register_bot(alpha)
    r = _add_chat(alpha, bot, role=Role.ANALYST)
    assert r.status_code == 403 and _code(r) == "insufficient_role" and sandbox.texts(CHAT) == []
    chat = _add_chat(alpha, bot).json()
    r = alpha.client(role=Role.ANALYST).delete(f"{CHATS}{chat['id']}/")
    assert r.status_code == 403 and _code(r) == "insufficient_role"
    r = beta.client().delete(f"{CHATS}{chat['id']}/")
    assert r.status_code == 404 and _code(r) == "not_found"
    assert beta.client().get(CHATS).json()["results"] == []
    r = beta.client().post(CHATS, {"bot": bot.pk, "chat_id": str(CHAT)}, format="json")  # alpha's bot
    assert r.status_code == 400 and _code(r) == "invalid_input"
    assert len(_rows(alpha, TelegramChat)) == 1 and _rows(beta, TelegramChat) == []
    assert alpha.client(role=Role.ADMIN).delete(f"{CHATS}{chat['id']}/").status_code == 204
    assert _rows(alpha, TelegramChat) == [] and [a[0] for a in _actions(alpha)][-1] == "telegram.chat_deleted"


# --- linking a member's own chat ------------------------------------------------------------------------


def test_a_member_links_their_chat_with_a_one_time_code(alpha, sandbox):
    bot = register_bot(alpha)
    viewer = alpha.users[Role.VIEWER]
    link = link_chat(alpha, sandbox, bot, Role.VIEWER)
    assert link["deep_link"] == f"https://t.me/ati_alerts_bot?start={link['code']}"
    assert link["command"] == f"/start {link['code']}" and link["bot"] == bot.pk
    expires = dt.datetime.fromisoformat(link["expires_at"])
    assert dt.timedelta(minutes=9) < expires - timezone.now() <= dt.timedelta(minutes=10)
    (chat,) = _rows(alpha, TelegramChat)
    assert chat.chat_id == str(CHAT) and chat.user_id == viewer.pk and chat.verified_at is not None
    assert sandbox.texts(CHAT)[-1].startswith(f"Linked: this chat now acts as {viewer.email} (viewer)")
    actions = _actions(alpha)
    assert ("telegram.chat_linked", f"user:{viewer.pk}") in [a[:2] for a in actions]
    assert actions[-1][:2] == ("telegram.command", f"user:{viewer.pk}")
    assert actions[-1][2]["command"] == "start" and actions[-1][2]["outcome"] == "linked"
    # the code works once
    sandbox.user_says(TOKEN, 777, f"/start {link['code']}", from_user={"id": 777, "first_name": "Mallory"})
    assert "unknown, used or expired" in sandbox.texts(777)[-1]
    assert len(_rows(alpha, TelegramChat)) == 1
    # the member sees their chat and can subscribe it
    listed = alpha.client(role=Role.VIEWER).get(CHATS).json()["results"]
    assert [c["id"] for c in listed] == [chat.pk]


def test_a_code_is_only_for_a_private_chat(alpha, sandbox):
    bot = register_bot(alpha)
    code = alpha.client(role=Role.VIEWER).post(LINK, {"bot": bot.pk}, format="json").json()["code"]
    sandbox.add_chat(-100200, "Trading desk")
    sandbox.user_says(TOKEN, -100200, f"/start {code}", from_user={"id": 31, "first_name": "Vic"})
    assert "private chat" in sandbox.texts(-100200)[-1]
    assert _rows(alpha, TelegramChat) == []


def test_link_code_input_roles_and_tenants(alpha, beta, sandbox):
    bot = register_bot(alpha)
    c = alpha.client(role=Role.VIEWER)
    # the only bot is the default
    assert c.post(LINK, {}, format="json").json()["bot"] == bot.pk
    # bad input
    r = c.post(LINK, {"bot": 10**9}, format="json")
    assert r.status_code == 400 and _code(r) == "invalid_input"
    r = alpha.client().post(LINK, {"bot": bot.pk}, format="json")  # an API key has no member
    assert r.status_code == 400 and _code(r) == "invalid_input"
    # members ask for themselves; admins (and admin keys) for another member
    analyst = alpha.users[Role.ANALYST]
    r = c.post(LINK, {"bot": bot.pk, "user_id": analyst.pk}, format="json")
    assert r.status_code == 403 and _code(r) == "insufficient_role"
    assert alpha.client(role=Role.ADMIN).post(LINK, {"user_id": analyst.pk}, format="json").status_code == 201
    assert alpha.client().post(LINK, {"user_id": analyst.pk}, format="json").status_code == 201
    r = alpha.client(role=Role.ADMIN).post(LINK, {"user_id": beta.users[Role.VIEWER].pk}, format="json")
    assert r.status_code == 400 and _code(r) == "invalid_input"
    # a read-only key may not
    r = alpha.client(scope="read").post(LINK, {"bot": bot.pk}, format="json")
    assert r.status_code == 403 and _code(r) == "insufficient_scope"
    # another tenant: its bot ids mean nothing here, and its host is not ours
    r = beta.client(role=Role.OWNER).post(LINK, {"bot": bot.pk}, format="json")
    assert r.status_code == 400 and _code(r) == "invalid_input"
    assert c.post(LINK, {"bot": bot.pk}, format="json", HTTP_HOST="beta.localhost").status_code == 404


# --- the webhook and the bot's commands -----------------------------------------------------------------


def _hook_post(client, bot, fx, body: dict, secret: str | None):
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    return client.post(f"/hooks/telegram/{fx.slug}/{bot.pk}/", body, content_type="application/json",
                       headers=headers)  # fmt: skip


@pytest.mark.parametrize("secret", [None, "", "wrong-secret"])
def test_a_wrong_or_missing_secret_is_403_and_nothing_happens(alpha, sandbox, client, secret):
    bot = register_bot(alpha)
    update = {"update_id": 1, "message": {"message_id": 1, "chat": {"id": CHAT, "type": "private"},
                                          "from": {"id": CHAT}, "date": 0, "text": "/pause"}}  # fmt: skip
    r = _hook_post(client, bot, alpha, update, secret)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert sandbox.texts(CHAT) == [] and _actions(alpha)[-1][0] == "telegram.bot_registered"


def test_the_right_secret_for_another_tenant_or_bot_is_403(alpha, beta, sandbox, client):
    bot = register_bot(alpha)
    secret = sandbox.bots[TOKEN].secret_token
    update = {"update_id": 1, "message": {"chat": {"id": CHAT, "type": "private"}, "text": "/help"}}
    assert _hook_post(client, bot, beta, update, secret).status_code == 403
    assert client.post(f"/hooks/telegram/alpha/{bot.pk + 1000}/", update, content_type="application/json",
                       headers={"X-Telegram-Bot-Api-Secret-Token": secret}).status_code == 403  # fmt: skip
    assert client.get(f"/hooks/telegram/alpha/{bot.pk}/").status_code == 405
    r = _hook_post(client, bot, alpha, {"not": "an update"}, secret)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_update"
    assert sandbox.texts(CHAT) == []


def test_an_update_telegram_delivers_twice_is_answered_once(alpha, sandbox, client):
    bot = register_bot(alpha)
    secret = sandbox.bots[TOKEN].secret_token
    update = {"update_id": 9, "message": {"chat": {"id": CHAT, "type": "private"}, "from": {"id": CHAT},
                                          "text": "/help"}}  # fmt: skip
    assert _hook_post(client, bot, alpha, update, secret).json() == {"ok": True}
    assert _hook_post(client, bot, alpha, update, secret).json() == {"ok": True, "duplicate": True}
    assert len(sandbox.texts(CHAT)) == 1


def test_help_answers_anyone_and_other_commands_ask_an_unlinked_chat_to_link(alpha, sandbox):
    register_bot(alpha)
    sandbox.user_says(TOKEN, CHAT, "/help")
    help_text = sandbox.texts(CHAT)[-1]
    assert "/status" in help_text and "/pause [reason]" in help_text and "link it from the dashboard" in help_text
    sandbox.user_says(TOKEN, CHAT, "/status@ati_alerts_bot")
    assert "Link this chat from the dashboard" in sandbox.texts(CHAT)[-1]
    sandbox.user_says(TOKEN, CHAT, "/frobnicate")
    assert "I don't know /frobnicate" in sandbox.texts(CHAT)[-1]
    sandbox.user_says(TOKEN, CHAT, "/status@some_other_bot")  # not for us: no answer
    sandbox.user_says(TOKEN, CHAT, "hello")
    assert sandbox.texts(CHAT)[-1] == "Send /help for what I understand."
    commands = [(a[1], a[2]["command"], a[2]["outcome"], a[2]["chat"]) for a in _actions(alpha)
                if a[0] == "telegram.command"]  # fmt: skip
    who = f"telegram:{CHAT}"
    assert commands == [(who, "help", "ok", str(CHAT)), (who, "status", "unlinked", str(CHAT)),
                        (who, "unknown", "unknown", str(CHAT))]  # fmt: skip


def _decisions(fx, rows):
    from intelligence.models import Decision

    now = timezone.now()
    with schema_context(fx.tenant.schema_name):
        for i, (action, symbol, confidence) in enumerate(rows):
            Decision.objects.create(source="stream", symbol=symbol, timeframe="1m", ts=now - dt.timedelta(minutes=i),
                                    action=action, confidence=confidence)  # fmt: skip


def test_status_decisions_and_pnl_for_a_linked_viewer(alpha, sandbox):
    from analytics.models import Alert
    from intelligence.models import Position

    bot = register_bot(alpha)
    link_chat(alpha, sandbox, bot, Role.VIEWER)
    _decisions(alpha, [("BUY", "BTC-USD", 0.81), ("SELL", "ETH-USD", 0.66), ("HOLD", "BTC-USD", 0.5)] +
               [("HOLD", "SOL-USD", 0.5)] * 4)  # fmt: skip
    with schema_context(alpha.tenant.schema_name):
        Alert.objects.create(rule="latency", value=900, threshold=500, message="p99 latency 900 ms > 500 ms",
                             last_seen_at=timezone.now())  # fmt: skip
        Position.objects.create(symbol="BTC-USD", qty=0.5, avg_price=40_000, last_price=42_000, realized_pnl=150.0)
    sandbox.user_says(TOKEN, CHAT, "/status")
    status = sandbox.texts(CHAT)[-1]
    assert f"{alpha.tenant.name} — status" in status and "Trading: running" in status
    assert "Stream: running (last decision" in status
    assert "Alerts firing: 1" in status and "p99 latency 900 ms > 500 ms" in status
    assert "Model in production: none deployed" in status
    assert "Decisions today (UTC): 7 (1 BUY, 1 SELL)" in status
    sandbox.user_says(TOKEN, CHAT, "/decisions")
    lines = sandbox.texts(CHAT)[-1].splitlines()
    assert lines[0] == "Last decisions:" and len(lines) == 6  # the newest five, newest first
    assert lines[1].startswith("HOLD SOL-USD 50% · ") and lines[-1].startswith("HOLD BTC-USD 50% · ")
    sandbox.user_says(TOKEN, CHAT, "/pnl")
    pnl = sandbox.texts(CHAT)[-1]
    assert "P&L total: +1,150.00" in pnl and "BTC-USD long 0.5 @ 40,000.00" in pnl and "unrealised +1,000.00" in pnl
    viewer = f"user:{alpha.users[Role.VIEWER].pk}"
    outcomes = [(a[1], a[2]["command"], a[2]["outcome"]) for a in _actions(alpha) if a[0] == "telegram.command"]
    assert outcomes[-3:] == [(viewer, "status", "ok"), (viewer, "decisions", "ok"), (viewer, "pnl", "ok")]


def test_pause_is_refused_to_a_viewer(alpha, sandbox):
    bot = register_bot(alpha)
    link_chat(alpha, sandbox, bot, Role.VIEWER)
    sandbox.user_says(TOKEN, CHAT, "/pause market looks wrong")
    assert sandbox.texts(CHAT)[-1].startswith("/pause needs the admin role; yours is viewer.")
    assert not KillSwitch.objects.filter(tenant=alpha.tenant, lifted_at=None).exists()
    last = _actions(alpha)[-1]
    assert last[1] == f"user:{alpha.users[Role.VIEWER].pk}" and last[2]["outcome"] == "denied"


def test_pause_by_an_admin_engages_the_kill_switch_audited(alpha, sandbox):
    from compliance import controls

    bot = register_bot(alpha)
    admin = alpha.users[Role.ADMIN]
    link_chat(alpha, sandbox, bot, Role.ADMIN)
    sandbox.user_says(TOKEN, CHAT, "/pause news spike")
    assert sandbox.texts(CHAT)[-1].startswith(f"Trading halted for {alpha.tenant.name}")
    switch = KillSwitch.objects.get(tenant=alpha.tenant, lifted_at=None)
    assert switch.reason == "news spike (Telegram /pause)" and switch.engaged_by == admin.email
    controls.reset_local()
    assert controls.kill_state(alpha.tenant.schema_name)["reason"] == "news spike (Telegram /pause)"
    actions = _actions(alpha, "")
    assert ("kill_switch.engaged", f"user:{admin.pk}") in [a[:2] for a in actions]
    assert actions[-1][:2] == ("telegram.command", f"user:{admin.pk}")
    assert actions[-1][2] == {"command": "pause", "chat": str(CHAT), "outcome": "engaged", "bot": "alerts"}
    # a second /pause says so; /status shows the halt
    sandbox.user_says(TOKEN, CHAT, "/pause")
    assert sandbox.texts(CHAT)[-1].startswith("Trading is already halted")
    sandbox.user_says(TOKEN, CHAT, "/status")
    assert "Trading: HALTED by this tenant's kill switch" in sandbox.texts(CHAT)[-1]


def test_a_group_chat_linked_to_an_admin_does_not_act_for_them(alpha, sandbox):
    bot = register_bot(alpha)
    sandbox.add_chat(-100300, "Desk")
    assert _add_chat(alpha, bot, chat_id=-100300, user_id=alpha.users[Role.ADMIN].pk).status_code == 201
    sandbox.user_says(TOKEN, -100300, "/pause", from_user={"id": 99, "first_name": "Someone"})
    assert "only in that member's private chat" in sandbox.texts(-100300)[-1]
    assert not KillSwitch.objects.filter(tenant=alpha.tenant, lifted_at=None).exists()


def test_a_member_who_left_cannot_command_from_their_chat(alpha, sandbox):
    bot = register_bot(alpha)
    link_chat(alpha, sandbox, bot, Role.ANALYST)
    Membership.objects.filter(tenant=alpha.tenant, user=alpha.users[Role.ANALYST]).delete()
    sandbox.user_says(TOKEN, CHAT, "/status")
    assert "no longer a member" in sandbox.texts(CHAT)[-1]
    assert _actions(alpha)[-1][2]["outcome"] == "not_a_member"


# --- notifications into the chat ------------------------------------------------------------------------


def _subscribe(fx, role, chat_pk, min_confidence=0.7):
    user = fx.users[role]
    return subscription_create(
        data={"events": ["decision"], "channel": "telegram", "telegram_chat": chat_pk,
              "min_confidence": min_confidence},
        user_id=user.pk, tenant_wide=False, is_admin=False, actor=user,
    )  # fmt: skip


def _deliver_when_allowed(pk: int) -> list[str]:
    """What each run of the delivery task said, run again when the rate allowed (as the queue's
    countdown does)."""
    import time

    outcomes = [delivery.deliver(pk)]
    while outcomes[-1] == "rate_limited" and len(outcomes) < 5:
        due = Delivery.objects.get(pk=pk).next_attempt_at
        time.sleep(max(0.0, (due - timezone.now()).total_seconds()))
        outcomes.append(delivery.deliver(pk))
    return outcomes


def _decision(decision_id, confidence, action="BUY", symbol="BTC-USD"):
    return {"decision_id": decision_id, "symbol": symbol, "timeframe": "1m", "action": action,
            "confidence": confidence, "price": 42_000.0}  # fmt: skip


def test_only_the_high_confidence_decision_reaches_the_members_chat(alpha, sandbox):
    bot = register_bot(alpha)
    link_chat(alpha, sandbox, bot, Role.ANALYST)
    before = len(sandbox.texts(CHAT))
    with schema_context(alpha.tenant.schema_name):
        _subscribe(alpha, Role.ANALYST, TelegramChat.objects.get().pk)
        high = emit("decision", _decision(1, 0.86), dedupe_key="decision:1")
        low = emit("decision", _decision(2, 0.55, "SELL"), dedupe_key="decision:2")
        assert fanout(high.pk) == 1 and fanout(low.pk) == 0
        (d,) = Delivery.objects.filter(event=high)
        # the bot answered /start in this chat a moment ago: the per-chat rate makes the message wait
        # (in the task, or back in the queue), never fail
        assert _deliver_when_allowed(d.pk)[-1] == "sent"
        d.refresh_from_db()
    assert d.status == Delivery.Status.SENT and d.channel == "telegram" and d.provider_id
    (text,) = sandbox.texts(CHAT)[before:]
    assert text.startswith("BUY BTC-USD (86%)")


# --- the offline demo -----------------------------------------------------------------------------------


def test_the_demo_bot_chat_and_subscription_are_set_up_once(alpha, sandbox):
    from notifications import demo

    sandbox.add_bot(demo.DEMO_BOT_TOKEN, demo.DEMO_BOT_USERNAME)
    sandbox.add_chat(demo.DEMO_CHAT_ID, demo.DEMO_CHAT_TITLE)
    owner = alpha.users[Role.OWNER]
    said = demo.telegram_demo_ensure(alpha.tenant, owner)
    assert "registered" in said and "linked" in said and "subscribed to decisions >= 58%" in said
    first_secret = sandbox.bots[demo.DEMO_BOT_TOKEN].secret_token
    # a restarted sandbox forgot the webhook: the next start sets it again, and adds nothing else
    sandbox.bots[demo.DEMO_BOT_TOKEN].webhook_url = ""
    said = demo.telegram_demo_ensure(alpha.tenant, owner)
    assert said == "Telegram demo: bot @ati_demo_bot's webhook set"
    hook = sandbox.bots[demo.DEMO_BOT_TOKEN]
    assert hook.webhook_url.endswith("/hooks/telegram/alpha/" + str(_rows(alpha, TelegramBot)[0].pk) + "/")
    assert hook.secret_token != first_secret
    (chat,) = _rows(alpha, TelegramChat)
    (sub,) = _rows(alpha, Subscription)
    assert chat.user_id == owner.pk and chat.chat_id == str(demo.DEMO_CHAT_ID)
    assert sub.telegram_chat_id == chat.pk and sub.min_confidence == demo.DEMO_MIN_CONFIDENCE
    assert sub.events == ["decision"] and sub.user_id == owner.pk
