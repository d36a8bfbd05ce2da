"""Sending one delivery on its channel. Each sender raises :class:`DeliveryError` (retryable unless
``permanent``) and otherwise returns what the channel gave back. Every message carries the
delivery's idempotency key (webhook header, e-mail Message-ID) so a receiver can drop a repeat."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from . import signing, telegram
from .models import Channel, Delivery, InAppNotification
from .render import Message, render

SYSTEM_ACTOR = "system:notifications"
log = logging.getLogger(__name__)


@dataclass
class DeliveryError(Exception):
    message: str
    retry_after: float | None = None
    permanent: bool = False

    def __str__(self) -> str:
        return self.message


@dataclass
class Sent:
    provider_id: str = ""
    note: str = ""


# --- secrets from the vault, kept in memory a few minutes (each read of the vault is audited) ------

_secrets: dict[tuple[str, int, int], tuple[float, str]] = {}
_lock = threading.Lock()


def secret_of(credential, purpose: str) -> str:
    from compliance.credentials import credential_use

    key = (connection.schema_name, credential.pk, credential.version)
    now = time.monotonic()
    with _lock:
        hit = _secrets.get(key)
        if hit and hit[0] > now:
            return hit[1]
    value = credential_use(credential.name, purpose, SYSTEM_ACTOR)
    with _lock:
        _secrets[key] = (now + settings.NOTIFY_SECRET_CACHE_S, value)
    return value


def forget_secrets() -> None:
    with _lock:
        _secrets.clear()


# --- channels ---------------------------------------------------------------------------------------


def send(d: Delivery) -> Sent:
    message = render(d.event)
    sender = {Channel.TELEGRAM: _telegram, Channel.WEBHOOK: _webhook, Channel.EMAIL: _email, Channel.INAPP: _inapp}
    sent = sender[d.channel](d, message)
    if message.note and not sent.note:
        sent.note = message.note
    return sent


def _telegram(d: Delivery, message: Message) -> Sent:
    chat = d.subscription.telegram_chat if d.subscription else None
    if chat is None:
        raise DeliveryError("The Telegram chat of this subscription was removed.", permanent=True)
    token = secret_of(chat.bot.credential, f"send notification {d.idempotency_key}")
    text = f"{message.title}\n\n{message.text}" if message.text and message.text != message.title else message.title
    if message.url:
        text += f"\n{message.url}"
    try:
        result = telegram.send_message(token, chat.chat_id, text)
    except telegram.TelegramError as exc:
        if exc.code == 429:
            raise DeliveryError(str(exc), retry_after=exc.retry_after) from None
        raise DeliveryError(str(exc), permanent=exc.permanent) from None
    return Sent(provider_id=str((result or {}).get("message_id", "")))


def webhook_body(d: Delivery) -> bytes:
    event = d.event
    return json.dumps(
        {"id": event.pk, "type": event.type, "severity": event.severity, "created_at": event.created_at.isoformat(),
         "tenant": connection.schema_name, "delivery": d.idempotency_key, "data": event.data},
        separators=(",", ":"), default=str,
    ).encode()  # fmt: skip


def _webhook(d: Delivery, message: Message) -> Sent:
    endpoint = d.subscription.webhook if d.subscription else None
    if endpoint is None:
        raise DeliveryError("The webhook endpoint of this subscription was removed.", permanent=True)
    secret = secret_of(endpoint.credential, f"sign webhook {d.idempotency_key}")
    body = webhook_body(d)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ATI-Webhooks/1",
        "X-ATI-Event": d.event.type,
        "Idempotency-Key": d.idempotency_key,
        signing.HEADER: signing.sign(secret, body),
    }
    request = urllib.request.Request(endpoint.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT_S) as response:  # noqa: S310 - the tenant's endpoint
            return Sent(provider_id=f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        detail = (exc.read() or b"")[:200].decode(errors="replace")
        raise DeliveryError(
            f"HTTP {exc.code} from the endpoint{': ' + detail if detail else ''}",
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        ) from None
    except TimeoutError:
        raise DeliveryError(f"No answer within {settings.NOTIFY_WEBHOOK_TIMEOUT_S:g} s (timeout)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise DeliveryError(f"No answer within {settings.NOTIFY_WEBHOOK_TIMEOUT_S:g} s (timeout)") from None
        raise DeliveryError(f"Cannot connect to the endpoint ({reason})") from None


def _email(d: Delivery, message: Message) -> Sent:
    from django.core.mail import EmailMultiAlternatives

    address = d.target.split(":", 1)[1]
    message_id = f"<{d.idempotency_key.replace(':', '.')}.{connection.schema_name}@ati.notifications>"
    mail = EmailMultiAlternatives(
        subject=message.title, body=message.text + (f"\n\n{message.url}" if message.url else ""),
        from_email=settings.DEFAULT_FROM_EMAIL, to=[address], headers={"Message-ID": message_id},
    )  # fmt: skip
    mail.attach_alternative(message.html, "text/html")
    try:
        mail.send()
    except Exception as exc:  # noqa: BLE001 - SMTP errors, refused connections, timeouts
        raise DeliveryError(f"E-mail not accepted: {type(exc).__name__}: {exc}"[:300]) from None
    return Sent(provider_id=message_id)


def inapp_group(schema: str, user_id: int) -> str:
    return f"inapp.{schema}.{user_id}"


def _inapp(d: Delivery, message: Message) -> Sent:
    user_id = int(d.target.split(":", 1)[1])
    note, _ = InAppNotification.objects.get_or_create(
        delivery=d,
        defaults={"user_id": user_id, "title": message.title, "body": message.text, "url": message.url,
                  "severity": message.severity},
    )  # fmt: skip
    schema, payload = connection.schema_name, inapp_payload(note)
    transaction.on_commit(lambda: _push(schema, user_id, payload))
    return Sent(provider_id=f"inapp:{note.pk}")


def inapp_payload(note: InAppNotification) -> dict:
    return {"id": note.pk, "title": note.title, "body": note.body, "url": note.url, "severity": note.severity,
            "created_at": note.created_at.isoformat(), "read": note.read_at is not None}  # fmt: skip


_loop: asyncio.AbstractEventLoop | None = None


def _layer_loop() -> asyncio.AbstractEventLoop:
    """One event loop thread per process for channel-layer sends: the layer's Redis connections are
    kept per loop, so a send reuses them (a fresh loop per send, as ``async_to_sync`` makes from a
    worker thread, connects anew each time: ~30 ms)."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="inapp-push", daemon=True).start()
            _loop = loop
        return _loop


def _push(schema: str, user_id: int, payload: dict) -> None:
    """Live to the member's open dashboards (the row is the record: a missed push is seen on the
    next page load)."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "notification.new", "notification": payload}
    try:
        asyncio.run_coroutine_threadsafe(layer.group_send(inapp_group(schema, user_id), message), _layer_loop()).result(
            timeout=5
        )
    except Exception as exc:  # noqa: BLE001 - best effort
        log.warning("in-app push to %s/%s failed: %s", schema, user_id, exc)
