"""The Telegram page of the dashboard (/app/notifications/telegram/) against the sandbox Bot API:
admins register a bot (Telegram's refusal on the form, nothing stored) and add chats (Telegram's
reason shown), every member links their own chat with a one-time code; members cannot manage,
another tenant's bots and chats are not found."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from compliance.models import Credential
from notifications.models import TelegramBot, TelegramChat
from tenants.models import Role
from tenants.resolution import redis_client
from tests.dashboard.support import dashboard_client

from .telegram_helpers import CHAT, TOKEN, register_bot

pytestmark = pytest.mark.django_db
PAGE = "/app/notifications/telegram/"


def _rows(fx, model):
    with schema_context(fx.tenant.schema_name):
        return list(model.objects.all())


def test_an_admin_registers_a_bot_and_adds_a_chat_for_a_member(alpha, sandbox):
    admin = dashboard_client(alpha, Role.ADMIN)
    page = admin.get(PAGE)
    assert page.status_code == 200 and 'data-form="register"' in page.content.decode()
    assert 'data-empty="bots"' in page.content.decode()
    r = admin.post(PAGE, {"action": "register", "name": "alerts", "token": TOKEN})
    assert r.status_code == 302 and r["Location"] == PAGE
    page = admin.get(PAGE).content.decode()
    assert "@ati_alerts_bot registered" in page and "data-webhook-ok" in page and TOKEN not in page
    (bot,) = _rows(alpha, TelegramBot)
    analyst = alpha.users[Role.ANALYST]
    r = admin.post(PAGE, {"action": "add_chat", "bot": bot.pk, "chat_id": str(CHAT), "user_id": analyst.pk})
    assert r.status_code == 302
    page = admin.get(PAGE).content.decode()
    assert "the test message went through" in page and f'data-chat="{CHAT}"' in page and analyst.email in page
    (chat,) = _rows(alpha, TelegramChat)
    assert chat.user_id == analyst.pk and chat.verified_at is not None
    assert sandbox.texts(CHAT)[0].startswith("✅")


def test_a_token_telegram_rejects_is_shown_on_the_form_and_nothing_is_stored(alpha, sandbox):
    admin = dashboard_client(alpha, Role.ADMIN)
    bad = "123456789:AAHnotthetokenatallnotatall"
    r = admin.post(PAGE, {"action": "register", "name": "alerts", "token": bad})
    page = r.content.decode()
    assert r.status_code == 400 and 'data-error-code="telegram_token_invalid"' in page and "@BotFather" in page
    assert bad not in page and 'value="alerts"' in page  # the name is kept, the token never echoed
    assert _rows(alpha, TelegramBot) == [] and _rows(alpha, Credential) == []


def test_a_chat_telegram_cannot_reach_shows_telegrams_reason(alpha, sandbox):
    bot = register_bot(alpha)
    r = dashboard_client(alpha, Role.ADMIN).post(PAGE, {"action": "add_chat", "bot": bot.pk, "chat_id": "31337"})
    page = r.content.decode()
    assert r.status_code == 400 and 'data-error-code="telegram_chat_unreachable"' in page
    assert "Bad Request: chat not found" in page and 'value="31337"' in page
    assert _rows(alpha, TelegramChat) == []


def test_a_member_links_their_telegram_with_a_code(alpha, sandbox):
    register_bot(alpha)
    viewer = dashboard_client(alpha, Role.VIEWER)
    page = viewer.get(PAGE).content.decode()
    assert "data-link-button" in page and 'data-form="register"' not in page and 'data-form="add-chat"' not in page
    r = viewer.post(PAGE, {"action": "link"})
    page = r.content.decode()
    assert r.status_code == 200 and "data-link-code" in page
    assert "https://t.me/ati_alerts_bot?start=" in page and "/start " in page
    code = page.split("https://t.me/ati_alerts_bot?start=")[1].split('"')[0]
    assert redis_client().get(f"tglink:{alpha.tenant.schema_name}:{code}") is not None


@pytest.mark.parametrize("action", ["register", "add_chat", "delete_bot", "delete_chat", "webhook"])
def test_members_cannot_manage_bots_or_chats(alpha, sandbox, action):
    bot = register_bot(alpha)
    r = dashboard_client(alpha, Role.ANALYST).post(
        PAGE, {"action": action, "bot": bot.pk, "name": "x", "token": TOKEN, "chat_id": str(CHAT)}
    )
    assert r.status_code == 403
    assert len(_rows(alpha, TelegramBot)) == 1 and _rows(alpha, TelegramChat) == []


def test_admins_delete_chats_and_bots_and_set_the_webhook_again(alpha, sandbox):
    bot = register_bot(alpha)
    admin = dashboard_client(alpha, Role.ADMIN)
    admin.post(PAGE, {"action": "add_chat", "bot": bot.pk, "chat_id": str(CHAT)})
    (chat,) = _rows(alpha, TelegramChat)
    sandbox.bots[TOKEN].webhook_url = ""  # Telegram forgot it
    assert admin.post(PAGE, {"action": "webhook", "bot": bot.pk}).status_code == 302
    assert sandbox.bots[TOKEN].webhook_url.endswith(f"/hooks/telegram/alpha/{bot.pk}/")
    assert admin.post(PAGE, {"action": "delete_chat", "chat": chat.pk}).status_code == 302
    assert _rows(alpha, TelegramChat) == []
    assert admin.post(PAGE, {"action": "delete_bot", "bot": bot.pk}).status_code == 302
    assert _rows(alpha, TelegramBot) == [] and sandbox.bots[TOKEN].webhook_url == ""


def test_another_tenants_bots_and_chats_are_not_found(alpha, beta, sandbox):
    bot = register_bot(alpha)
    dashboard_client(alpha, Role.ADMIN).post(PAGE, {"action": "add_chat", "bot": bot.pk, "chat_id": str(CHAT)})
    (chat,) = _rows(alpha, TelegramChat)
    theirs = dashboard_client(beta, Role.OWNER)
    page = theirs.get(PAGE).content.decode()
    assert "ati_alerts_bot" not in page and 'data-empty="bots"' in page
    for form in ({"action": "delete_bot", "bot": bot.pk}, {"action": "delete_chat", "chat": chat.pk},
                 {"action": "webhook", "bot": bot.pk}):  # fmt: skip
        r = theirs.post(PAGE, form)
        assert r.status_code == 404 and 'data-error-code="not_found"' in r.content.decode()
    assert len(_rows(alpha, TelegramBot)) == 1 and len(_rows(alpha, TelegramChat)) == 1
    # and alpha's page is not beta's to open on alpha's host
    assert theirs.get(PAGE, HTTP_HOST="alpha.localhost").status_code == 404
