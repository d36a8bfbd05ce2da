"""Writes of the notifications area: emitting events (``emit``, re-exported from the delivery
engine), subscriptions, webhook endpoints, the in-app notification centre, and retrying dead
deliveries. Each change is audited; secrets go to the credentials vault."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import urllib.parse
import zoneinfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from api.errors import ApplicationError, NotFound
from compliance.services import actor_display, audit_record

from . import delivery, signing
from .delivery import emit  # noqa: F401 - the area's entry point for every other app
from .events import SUBSCRIBABLE
from .models import Channel, Delivery, Event, InAppNotification, Subscription, TelegramChat, WebhookEndpoint

NAME_RE = re.compile(r"^[-a-z0-9_]{1,64}$")
ACTIONS = ("BUY", "SELL", "HOLD")


def _invalid(field: str, message: str, code: str = "invalid_input") -> ApplicationError:
    return ApplicationError(code, message, {field: [message]})


# --- subscriptions ---------------------------------------------------------------------------------


def _clean_subscription(
    data: dict, *, user_id: int | None, is_admin: bool, partial: Subscription | None = None
) -> dict:
    """Validated fields of a subscription (all of them, or those given when updating ``partial``)."""
    out: dict = {}
    get = data.get
    if partial is None or "events" in data:
        events = get("events")
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            raise _invalid("events", f"Give a list of event types: {', '.join(SUBSCRIBABLE)}.")
        unknown = sorted(set(events) - set(SUBSCRIBABLE))
        if unknown:
            raise ApplicationError(
                "unknown_event", f"Unknown event type(s) {', '.join(unknown)}; choose from {', '.join(SUBSCRIBABLE)}.",
                {"events": unknown, "allowed": SUBSCRIBABLE},
            )  # fmt: skip
        out["events"] = sorted(set(events))
    channel = get("channel", partial.channel if partial else None)
    if partial is None or "channel" in data:
        if channel not in Channel.values:
            raise _invalid("channel", f"channel must be one of {', '.join(Channel.values)}.")
        out["channel"] = channel
    if "min_confidence" in data:
        value = get("min_confidence")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1):
            raise _invalid("min_confidence", "min_confidence is a number from 0 to 1 (or null).")
        out["min_confidence"] = None if value is None else float(value)
    if "symbols" in data:
        symbols = get("symbols") or []
        if not isinstance(symbols, list) or not all(isinstance(s, str) and 0 < len(s) <= 32 for s in symbols):
            raise _invalid("symbols", "symbols is a list of instrument symbols (empty: all).")
        out["symbols"] = sorted({s.upper() for s in symbols})
    if "actions" in data:
        actions = get("actions") or []
        if not isinstance(actions, list) or not set(actions) <= set(ACTIONS):
            raise _invalid("actions", "actions is a list of BUY, SELL, HOLD (empty: BUY and SELL).")
        out["actions"] = sorted(set(actions))
    for field in ("quiet_start", "quiet_end"):
        if field in data:
            value = get(field)
            if value in (None, ""):
                out[field] = None
                continue
            try:
                out[field] = dt.time.fromisoformat(str(value))
            except ValueError:
                raise _invalid(field, f"{field} is a time of day, HH:MM (or null).") from None
    if "timezone" in data:
        tz = get("timezone") or "UTC"
        try:
            zoneinfo.ZoneInfo(str(tz))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise _invalid(
                "timezone", f"Unknown time zone '{str(tz)[:64]}'; use an IANA name like Europe/Berlin."
            ) from None
        out["timezone"] = str(tz)
    if "digest" in data:
        if get("digest") not in Subscription.Digest.values:
            raise _invalid("digest", f"digest is one of {', '.join(Subscription.Digest.values)}.")
        out["digest"] = get("digest")
    if "enabled" in data:
        if not isinstance(get("enabled"), bool):
            raise _invalid("enabled", "enabled is true or false.")
        out["enabled"] = get("enabled")
    if "name" in data:
        name = get("name") or ""
        if not isinstance(name, str) or len(name) > 120:
            raise _invalid("name", "name is a text of at most 120 characters.")
        out["name"] = name
    # the target, which the channel decides
    if partial is None or {"channel", "telegram_chat", "webhook", "email"} & set(data):
        out.update(_target(channel, data, partial, user_id=user_id, is_admin=is_admin))
    return out


def _target(channel: str, data: dict, partial: Subscription | None, *, user_id, is_admin: bool) -> dict:
    out = {"telegram_chat": None, "webhook": None, "email": ""}
    if channel == Channel.TELEGRAM:
        chat_id = data.get("telegram_chat", partial.telegram_chat_id if partial else None)
        chat = (
            TelegramChat.objects.filter(pk=chat_id).select_related("bot").first() if isinstance(chat_id, int) else None
        )
        if chat is None:
            raise _invalid(
                "telegram_chat",
                "Give the id of a registered Telegram chat (GET /api/v1/notifications/telegram/chats/).",
            )
        if not is_admin and chat.user_id != user_id:
            raise ApplicationError(
                "not_your_chat", "This Telegram chat is linked to another member; only an admin may send to it.",
                {"telegram_chat": chat.pk}, status=403,
            )  # fmt: skip
        out["telegram_chat"] = chat
    elif channel == Channel.WEBHOOK:
        if not is_admin:
            raise ApplicationError(
                "insufficient_role", "Webhook subscriptions are managed by tenant admins.", {"required_role": "admin"},
                status=403,
            )  # fmt: skip
        endpoint_id = data.get("webhook", partial.webhook_id if partial else None)
        endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first() if isinstance(endpoint_id, int) else None
        if endpoint is None:
            raise _invalid("webhook", "Give the id of a webhook endpoint (GET /api/v1/notifications/webhooks/).")
        out["webhook"] = endpoint
    elif channel == Channel.EMAIL:
        from django.core.validators import validate_email

        email = data.get("email", partial.email if partial else "") or _own_email(user_id)
        try:
            validate_email(email)
        except Exception:
            raise _invalid("email", "Give a valid e-mail address.") from None
        if not is_admin and email.lower() != (_own_email(user_id) or "").lower():
            raise ApplicationError(
                "not_your_address", "Members subscribe their own e-mail address; an admin may add others.",
                {"email": ["Not your address."]}, status=403,
            )  # fmt: skip
        out["email"] = email
    elif channel == Channel.INAPP and user_id is None and not is_admin:
        raise _invalid("channel", "In-app notifications go to a member.")
    return out


def _own_email(user_id: int | None) -> str:
    if user_id is None:
        return ""
    from accounts.models import User

    return User.objects.filter(pk=user_id).values_list("email", flat=True).first() or ""


def subscription_create(*, data: dict, user_id: int | None, tenant_wide: bool, is_admin: bool, actor) -> Subscription:
    """A subscription for the member ``user_id`` (their in-app centre, own address, own chat), or
    for the tenant (``tenant_wide``: admins only; in-app then reaches every member)."""
    if tenant_wide and not is_admin:
        raise ApplicationError(
            "insufficient_role", "Tenant-wide subscriptions are managed by tenant admins.", {"required_role": "admin"},
            status=403,
        )  # fmt: skip
    owner = None if tenant_wide else user_id
    if owner is None and not tenant_wide:
        raise _invalid("user", "An API key has no member: create a tenant-wide subscription (tenant_wide: true).")
    fields = _clean_subscription(data, user_id=owner, is_admin=is_admin)
    with transaction.atomic():
        sub = Subscription.objects.create(user_id=owner, created_by=actor_display(actor), **fields)
        audit_record(actor, "notification.subscribed", sub, _sub_audit(sub))
    return sub


def subscription_update(*, sub: Subscription, data: dict, is_admin: bool, actor) -> Subscription:
    fields = _clean_subscription(data, user_id=sub.user_id, is_admin=is_admin, partial=sub)
    with transaction.atomic():
        for key, value in fields.items():
            setattr(sub, key, value)
        sub.save()
        audit_record(actor, "notification.subscription_changed", sub, {"changed": sorted(fields)})
    return sub


def subscription_delete(*, sub: Subscription, actor) -> None:
    with transaction.atomic():
        audit_record(actor, "notification.unsubscribed", sub, _sub_audit(sub))
        sub.delete()


def _sub_audit(sub: Subscription) -> dict:
    return {"events": sub.events, "channel": sub.channel, "user_id": sub.user_id, "digest": sub.digest}


# --- webhook endpoints ------------------------------------------------------------------------------


def _check_url(url) -> str:
    if not isinstance(url, str) or len(url) > 500:
        raise _invalid("url", "Give the endpoint's URL (at most 500 characters).", "invalid_url")
    parts = urllib.parse.urlsplit(url)
    allowed = ("https", "http") if settings.NOTIFY_WEBHOOK_ALLOW_HTTP else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise _invalid("url", f"The URL must be {' or '.join(allowed)}:// with a host.", "invalid_url")
    if parts.username or parts.password:
        raise _invalid("url", "Put no credentials in the URL: requests are signed instead.", "invalid_url")
    try:
        addresses = {
            info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
        }
    except OSError:
        raise _invalid("url", f"The host '{parts.hostname}' does not resolve.", "invalid_url") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            raise _invalid("url", "The URL points at an address webhooks may not reach.", "invalid_url")
    return url


@sensitive_variables("secret")
def webhook_create(*, name: str, url: str, actor) -> tuple[WebhookEndpoint, str]:
    """An endpoint and its signing secret (returned this once; kept only in the vault)."""
    from compliance.credentials import credential_create
    from compliance.models import Credential

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _invalid("name", "name: 1-64 of a-z, 0-9, - and _.")
    taken = ApplicationError(
        "name_taken", f"A webhook named '{name}' exists; choose another name.", {"name": name}, status=409
    )
    if WebhookEndpoint.objects.filter(name=name).exists():
        raise taken
    url = _check_url(url)
    secret = signing.new_secret()
    try:
        with transaction.atomic():
            credential = credential_create(
                name=f"webhook-{name}", kind=Credential.Kind.WEBHOOK, secret=secret, actor=actor
            )
            endpoint = WebhookEndpoint.objects.create(
                name=name, url=url, credential=credential, created_by=actor_display(actor)
            )
            audit_record(actor, "notification.webhook_created", endpoint, {"name": name, "url": url})
    except IntegrityError:
        raise taken from None
    except ApplicationError as exc:
        if exc.code in ("name_taken", "credential_name_taken"):
            raise taken from None
        raise
    return endpoint, secret


def webhook_update(*, endpoint: WebhookEndpoint, data: dict, actor) -> WebhookEndpoint:
    changed = {}
    if "url" in data:
        changed["url"] = _check_url(data["url"])
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise _invalid("enabled", "enabled is true or false.")
        changed["enabled"] = data["enabled"]
    with transaction.atomic():
        for key, value in changed.items():
            setattr(endpoint, key, value)
        endpoint.save()
        audit_record(actor, "notification.webhook_changed", endpoint, changed)
    return endpoint


@sensitive_variables("secret")
def webhook_rotate(*, endpoint: WebhookEndpoint, actor) -> str:
    from compliance.credentials import credential_rotate

    secret = signing.new_secret()
    credential_rotate(credential_id=endpoint.credential_id, secret=secret, actor=actor)
    return secret


def webhook_delete(*, endpoint: WebhookEndpoint, actor) -> None:
    from compliance.credentials import credential_delete

    with transaction.atomic():
        audit_record(actor, "notification.webhook_deleted", endpoint, {"name": endpoint.name})
        credential = endpoint.credential_id
        endpoint.delete()
        credential_delete(credential_id=credential, actor=actor)


# --- test messages ----------------------------------------------------------------------------------


def test_send(*, channel: str, target: str, subscription: Subscription | None, actor) -> Delivery:
    """Send a test message to one target now, in this request (the caller sees the outcome)."""
    from django.db import connection

    tenant = getattr(connection, "tenant", None)
    data = {"tenant": getattr(tenant, "name", None) or connection.schema_name, "by": actor_display(actor)}
    event = Event.objects.create(type="test", data=data, fanned_out_at=timezone.now())
    d = Delivery.objects.create(
        event=event, subscription=subscription, channel=channel, target=target, idempotency_key=f"{event.pk}:{target}"
    )
    delivery.deliver(d.pk)
    d.refresh_from_db()
    return d


# --- in-app ------------------------------------------------------------------------------------------


def inapp_read(*, user_id: int, ids: list[int] | None = None) -> int:
    """Mark the member's notifications read (the given ones, or all); how many changed."""
    rows = InAppNotification.objects.filter(user_id=user_id, read_at=None)
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    return rows.update(read_at=timezone.now())


# --- dead letters ------------------------------------------------------------------------------------


def delivery_retry(*, delivery_id: int, actor) -> Delivery:
    with transaction.atomic():
        d = delivery.retry(delivery_id)
        audit_record(actor, "notification.delivery_retried", d, {"channel": d.channel, "target": d.target})
    return d


def deliveries_retry_dead(*, actor, channel: str | None = None) -> int:
    ids = Delivery.objects.filter(status=Delivery.Status.DEAD)
    if channel:
        ids = ids.filter(channel=channel)
    n = 0
    for pk in list(ids.values_list("pk", flat=True)[:1000]):
        delivery_retry(delivery_id=pk, actor=actor)
        n += 1
    return n


def subscription_get(*, pk: int) -> Subscription:
    sub = Subscription.objects.filter(pk=pk).select_related("telegram_chat", "webhook").first()
    if sub is None:
        raise NotFound("subscription", {"subscription_id": pk})
    return sub
