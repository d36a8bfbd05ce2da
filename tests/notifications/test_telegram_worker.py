"""The Telegram channel on a real Celery worker consuming the ``notify`` queue, with committed data
(as in production) and the sandbox Bot API: a member subscribed to decisions of confidence >= 0.7
gets the high-confidence decision in their chat and not the low one; three messages to one chat
all arrive, spaced by our send rate (no 429 from Telegram); a command sent to the bot is answered
at once, not behind the notifications queued for the chat."""

from __future__ import annotations

import threading
import time

import pytest
from django.test import override_settings
from django_tenants.utils import schema_context

from notifications.delivery import emit
from notifications.models import Delivery, Event, TelegramChat
from notifications.sandbox import TelegramSandbox
from notifications.services import subscription_create
from tenants.models import Role

from .telegram_helpers import TOKEN, in_process

PRIVATE, GROUP = 5_550_001, -1_005_550_002  # the owner's own chat with the bot; a desk group


def _wait(check, seconds=60):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the worker did not get there"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def scenario(own_tenant, worker_thread, django_db_blocker):
    """Committed before any test transaction: the tenant's bot on the sandbox, the owner's private
    chat subscribed to BTC-USD decisions >= 0.7, a group chat to ETH-USD decisions >= 0.7."""
    from notifications.telegram_services import telegram_bot_register, telegram_chat_add
    from tenants.models import Membership
    from tenants.resolution import redis_client

    box = TelegramSandbox(webhook_post=in_process).start()
    box.add_bot(TOKEN, "ati_alerts_bot")
    box.add_chat(PRIVATE, "Olive Owner")
    box.add_chat(GROUP, "Trading desk")
    settings = override_settings(TELEGRAM_API_BASE=box.url, TELEGRAM_WEBHOOK_BASE="http://testserver")
    settings.enable()
    seen = list(redis_client().scan_iter("tgupd:*"))  # update ids of an earlier session's sandbox
    if seen:
        redis_client().delete(*seen)
    with django_db_blocker.unblock(), schema_context(own_tenant.schema_name):
        owner = Membership.objects.get(tenant=own_tenant, role=Role.OWNER).user
        bot = telegram_bot_register(tenant=own_tenant, name="alerts", token=TOKEN, actor=owner)
        chats = {}
        for chat_id, symbol in ((PRIVATE, "BTC-USD"), (GROUP, "ETH-USD")):
            chat = telegram_chat_add(tenant=own_tenant, bot=bot, chat_id=chat_id, user_id=owner.pk, actor=owner)
            subscription_create(
                data={"events": ["decision"], "channel": "telegram", "telegram_chat": chat.pk, "min_confidence": 0.7,
                      "symbols": [symbol]},
                user_id=owner.pk, tenant_wide=False, is_admin=False, actor=owner,
            )  # fmt: skip
            chats[chat_id] = chat
    yield box, owner, chats
    settings.disable()
    box.stop()


def _decision(decision_id: int, confidence: float, symbol: str, action: str = "BUY") -> dict:
    return {"decision_id": decision_id, "symbol": symbol, "timeframe": "1m", "action": action,
            "confidence": confidence, "price": 100.0}  # fmt: skip


pytestmark = pytest.mark.django_db  # the test database must exist for the module fixtures


def _committed(schema: str, fn):
    """``fn()`` in ``schema`` on a connection of its own (a thread), committed as it goes: what the
    app emits must commit for the fan-out to be queued and for the worker to see it (the test's own
    connection is inside a transaction that rolls back). The module's tenant is dropped at the end."""
    from django.db import connection

    out: dict = {}

    def run():
        try:
            with schema_context(schema):
                out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - raised again in the test's thread
            out["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _a_second_since_the_last_message(box, chat_id):
    """Each test starts with our send rates cleared (tests/conftest.py); Telegram's memory of the
    chat is not, so let its second pass as the rate would have."""
    said = box.messages(chat_id)
    if said:
        time.sleep(max(0.0, said[-1].at + 1.05 - time.time()))


def test_only_the_high_confidence_decision_arrives_in_the_subscribers_chat(own_tenant, scenario):
    box, owner, chats = scenario
    _a_second_since_the_last_message(box, PRIVATE)
    before = box.texts(PRIVATE)
    # when a high- and a low-confidence decision are emitted (each in its own committed transaction)
    high, low = _committed(own_tenant.schema_name, lambda: (
        emit("decision", _decision(101, 0.82, "BTC-USD"), dedupe_key="decision:101"),
        emit("decision", _decision(102, 0.64, "BTC-USD", "SELL"), dedupe_key="decision:102"),
    ))  # fmt: skip
    with schema_context(own_tenant.schema_name):
        # then the worker fans both out, and only the high one has a delivery, sent
        def settled():
            fanned = Event.objects.filter(pk__in=[high.pk, low.pk]).exclude(fanned_out_at=None).count() == 2
            return fanned and Delivery.objects.filter(event=high, status="sent").exists()

        _wait(settled)
        (d,) = Delivery.objects.filter(event__in=[high, low])
        assert d.event_id == high.pk and d.channel == "telegram"
        assert d.target == f"telegram:{chats[PRIVATE].bot_id}:{PRIVATE}"
        assert d.status == "sent" and d.attempts == 1 and d.last_error == "" and d.provider_id
        assert d.subscription.user_id == owner.pk
    new = box.texts(PRIVATE)[len(before) :]
    assert len(new) == 1 and new[0].startswith("BUY BTC-USD (82%)")
    assert box.texts(GROUP)[1:] == []  # the other chat wants ETH-USD only


def test_three_messages_to_one_chat_all_arrive_without_a_429(own_tenant, scenario):
    box, owner, chats = scenario
    _a_second_since_the_last_message(box, GROUP)
    rejected = box.rejected(429)
    events = _committed(own_tenant.schema_name, lambda: [
        emit("decision", _decision(200 + i, 0.9, "ETH-USD"), dedupe_key=f"decision:{200 + i}") for i in range(3)
    ])  # fmt: skip
    with schema_context(own_tenant.schema_name):
        _wait(lambda: Delivery.objects.filter(event__in=events, status="sent").count() == 3)
        rows = list(Delivery.objects.filter(event__in=events))
    # Telegram refused nothing (our per-chat rate made them wait), and the log has no error left
    assert box.rejected(429) == rejected
    assert [(r.status, r.attempts, r.last_error) for r in rows] == [("sent", 1, "")] * 3
    sent = box.messages(GROUP)[-3:]
    assert [m.text.split(" (")[0] for m in sent] == ["BUY ETH-USD"] * 3


def test_a_command_is_answered_at_once_while_notifications_queue_for_the_chat(own_tenant, scenario):
    box, owner, chats = scenario
    _a_second_since_the_last_message(box, PRIVATE)
    rejected = box.rejected(429)
    events = _committed(own_tenant.schema_name, lambda: [
        emit("decision", _decision(300 + i, 0.95, "BTC-USD"), dedupe_key=f"decision:{300 + i}") for i in range(4)
    ])  # fmt: skip
    # when the owner sends /status from their chat while those wait for the chat's send rate (the
    # webhook served on a connection of its own, committing as a web process does)
    result = _committed("public", lambda: box.user_says(TOKEN, PRIVATE, "/status", from_user={"id": PRIVATE}))
    # then Telegram got its 200 and the answer is in the chat when the webhook call returns: it did
    # not queue behind the notifications (it took a send slot of the chat like they do)
    assert result["status"] == 200
    assert any(t.startswith(f"{own_tenant.name} — status") for t in box.texts(PRIVATE))
    with schema_context(own_tenant.schema_name):
        from compliance.models import AuditRecord

        record = AuditRecord.objects.filter(action="telegram.command").latest("id")
        assert record.actor == f"user:{owner.pk}" and record.details["outcome"] == "ok"
        assert TelegramChat.objects.get(chat_id=str(PRIVATE)).user_id == owner.pk
        _wait(lambda: Delivery.objects.filter(event__in=events, status="sent").count() == 4)
        assert set(Delivery.objects.filter(event__in=events).values_list("attempts", "last_error")) == {(1, "")}
    assert box.rejected(429) == rejected
