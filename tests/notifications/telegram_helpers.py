"""Fixtures for the Telegram tests: the sandbox Bot API (notifications.sandbox) on a local port with
the settings pointed at it, webhooks delivered to this test's Django in-process (so they see the
test's transaction; the command is answered as the response closes, before the POST returns), and
a registered bot with a member's linked chat."""

from __future__ import annotations

import urllib.parse

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from notifications.sandbox import TelegramSandbox
from tenants.models import Role
from tenants.resolution import redis_client

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
OTHER_TOKEN = "987654321:AAF-other-bot-token-for-the-tests-xyz"
CHAT = 4242001  # a private chat: the person's own id


def in_process(url: str, body: bytes, headers: dict) -> int:
    """The sandbox's webhook POST, served by this process's Django (the test's transaction)."""
    path = urllib.parse.urlsplit(url).path
    extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    return Client().post(path, data=body, content_type="application/json", headers=extra).status_code


@pytest.fixture
def sandbox(settings):
    _telegram_keys_reset()
    box = TelegramSandbox(webhook_post=in_process).start()
    box.add_bot(TOKEN, "ati_alerts_bot", first_name="ATI alerts")
    box.add_bot(OTHER_TOKEN, "other_bot")
    box.add_chat(CHAT, "Ann Analyst")
    settings.TELEGRAM_API_BASE = box.url
    settings.TELEGRAM_WEBHOOK_BASE = "http://testserver"
    settings.TELEGRAM_TIMEOUT_S = 5
    yield box
    box.stop()


def _telegram_keys_reset():
    """Link codes and seen update ids live in Redis across tests (and sessions, whose ids repeat)."""
    client = redis_client()
    keys = [*client.scan_iter("tglink:*"), *client.scan_iter("tgupd:*")]
    if keys:
        client.delete(*keys)


def register_bot(fx, name: str = "alerts", token: str = TOKEN):
    from notifications.telegram_services import telegram_bot_register

    with schema_context(fx.tenant.schema_name):
        return telegram_bot_register(tenant=fx.tenant, name=name, token=token, actor=fx.users[Role.ADMIN])


def link_chat(fx, sandbox, bot, role: str, chat_id: int = CHAT):
    """The member of ``role`` links their private chat with the bot as a person would: a code from
    the API, then /start <code> in the chat."""
    r = fx.client(role=role).post("/api/v1/notifications/telegram/link/", {"bot": bot.pk}, format="json")
    assert r.status_code == 201, r.content
    sandbox.user_says(TOKEN, chat_id, f"/start {r.json()['code']}", from_user={"id": chat_id, "first_name": role})
    return r.json()
