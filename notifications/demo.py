"""The offline demo's Telegram: a bot and a chat on the local sandbox Bot API (``manage.py
telegram_sandbox --demo``, started by ``make run`` when TELEGRAM_API_BASE is not set), the chat
linked to the demo owner and subscribed to confident decisions, so decisions show up on the
sandbox page as the replay streams bars. The token is the sandbox's, not a secret."""

from __future__ import annotations

from django.db import transaction
from django_tenants.utils import schema_context

DEMO_BOT_TOKEN = "8000000001:AAdemo_sandbox_token_not_a_secret"
DEMO_BOT_USERNAME = "ati_demo_bot"
DEMO_BOT_NAME = "demo"
DEMO_CHAT_ID = 700100
DEMO_CHAT_TITLE = "Demo owner"
# The demo stream's BUY/SELL decisions have calibrated confidences just above the default flow's
# floor of 0.55 (calibration starts near 0.5 and rises with evidence). Quartiles measured with
# `make run`: 0.571 / 0.574 / 0.578 on a fresh start (~50 BUY/SELL a minute), 0.566 / 0.590 / 0.607
# after a restart (~110 a minute). 0.58 sends the confident quarter at first (a message every few
# seconds) and stays near Telegram's one message a second per chat later; 0.7 would never fire here.
DEMO_MIN_CONFIDENCE = 0.58


def telegram_demo_ensure(tenant, owner) -> str:
    """Idempotent: the demo bot registered (else its webhook set again: a restarted sandbox forgot
    it), the demo chat added for ``owner``, and its subscription to decisions >= the demo's
    confidence. What was done, in a line."""
    from .models import Subscription, TelegramBot, TelegramChat
    from .services import subscription_create
    from .telegram_services import telegram_bot_register, telegram_bot_webhook_set, telegram_chat_add

    done = []
    with schema_context(tenant.schema_name):
        bot = TelegramBot.objects.filter(name=DEMO_BOT_NAME).first()
        if bot is None:
            bot = telegram_bot_register(tenant=tenant, name=DEMO_BOT_NAME, token=DEMO_BOT_TOKEN, actor=owner)
            done.append(f"bot @{bot.username} registered")
        else:
            telegram_bot_webhook_set(tenant=tenant, bot=bot, actor=owner)
            done.append(f"bot @{bot.username}'s webhook set")
        if bot.webhook_error:
            done.append(f"(webhook refused: {bot.webhook_error})")
        chat = TelegramChat.objects.filter(bot=bot, chat_id=str(DEMO_CHAT_ID)).first()
        if chat is None:
            chat = telegram_chat_add(
                tenant=tenant, bot=bot, chat_id=DEMO_CHAT_ID, title=DEMO_CHAT_TITLE, user_id=owner.pk, actor=owner
            )
            done.append(f"chat {DEMO_CHAT_ID} linked to {owner.email}")
        with transaction.atomic():
            if not Subscription.objects.filter(telegram_chat=chat, events__contains=["decision"]).exists():
                subscription_create(
                    data={"name": "Demo: confident decisions on Telegram", "events": ["decision"],
                          "channel": "telegram", "telegram_chat": chat.pk, "min_confidence": DEMO_MIN_CONFIDENCE},
                    user_id=owner.pk, tenant_wide=False, is_admin=True, actor=owner,
                )  # fmt: skip
                done.append(f"subscribed to decisions >= {DEMO_MIN_CONFIDENCE:.0%}")
    return "Telegram demo: " + ", ".join(done)
