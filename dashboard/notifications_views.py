"""The dashboard's notification pages: the member's notification centre (inbox, mark read), their
subscriptions (and, for admins, the tenant's), webhook endpoints (admins), and the delivery log
with its dead letters (admins retry). Every rule lives in notifications' services and selectors:
these views turn form fields into the services' input, show their ApplicationError messages on the
form, and render.

Members see and change only their own subscriptions and deliveries; another member's subscription
is a 404 here as in the API, a tenant-wide one a 403 (admins manage those)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import F, Q
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_POST

from api.errors import ApplicationError, NotFound
from notifications import selectors, services
from notifications.events import EVENTS, SUBSCRIBABLE
from notifications.models import Channel, Delivery, Severity, Subscription, TelegramChat, WebhookEndpoint
from notifications.services import ACTIONS
from tenants.models import Role

from .access import can, forbidden, tenant_page
from .paging import Choice, Dates, ListSpec, Search

LOG_PAGE = 50
CHANNEL_LABELS = {
    Channel.INAPP: "In-app (notification centre)",
    Channel.EMAIL: "E-mail",
    Channel.TELEGRAM: "Telegram chat",
    Channel.WEBHOOK: "Webhook",
}


def _error_status(exc: ApplicationError) -> int:
    return exc.status if 400 <= exc.status < 500 else 400


# --- the live bell -------------------------------------------------------------------------------


def ws_url(request) -> str:
    """Where the browser reaches ``ws/notifications/`` on daphne: ``WS_PUBLIC_URL`` behind a proxy,
    else this host on ``WS_PORT`` (its origin is in the page's connect-src, ops/security_headers)."""
    configured = settings.WS_PUBLIC_URL
    if configured:
        return configured.rstrip("/") + "/ws/notifications/"
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host().split(':')[0]}:{settings.WS_PORT}/ws/notifications/"


def ws_ticket(request) -> str:
    """A one-use ticket for the bell's ``ws/notifications/`` handshake ("" when Redis is down: the
    page still renders, the bell asks again later)."""
    from tenants.channels import ws_ticket_issue

    try:
        return ws_ticket_issue(tenant_id=request.tenant.pk, user_id=request.user.pk, key_id=None)
    except Exception:  # noqa: BLE001 - the bell is an extra; the page must not fail for it
        return ""


@tenant_page()
def notifications_ticket(request):
    """A fresh ticket for the bell's socket (after a disconnect)."""
    return JsonResponse({"ticket": ws_ticket(request)}, headers={"Cache-Control": "no-store"})


# --- the notification centre ---------------------------------------------------------------------


INBOX_LIST = ListSpec(
    "notifications",
    "notifications",
    search=Search(("title", "body"), "Title or text"),
    filters=(
        Choice.either("state", "State", ("unread", "Unread"), ("read", "Read"), Q(read_at=None)),
        Choice("severity", "Severity", Severity.choices),
        Dates("created_at", "Received"),
    ),
)  # fmt: skip


@tenant_page()
def notifications(request):
    """The member's inbox: unread first, newest first."""
    rows = selectors.inbox(user_id=request.user.pk).order_by(F("read_at").asc(nulls_first=True), "-id")
    listed = INBOX_LIST.apply(request, rows)
    context = {
        "inbox": listed,
        # new notifications are added on top of the whole inbox's first page, not of a filtered one
        "live": not listed.active and listed.page.number == 1,
        "unread": selectors.unread_count(user_id=request.user.pk),
    }
    return render(request, "dashboard/notifications.html", context)


@require_POST
@tenant_page()
def notifications_read(request):
    """Mark one notification read (``id``) or all of them (``all``)."""
    uid = request.user.pk
    if request.POST.get("all"):
        n = services.inapp_read(user_id=uid)
        messages.success(request, f"{n} notification(s) marked read." if n else "Nothing was unread.")
        return redirect("dashboard:notifications")
    raw = request.POST.get("id", "")
    if not raw.isdigit() or not selectors.inbox(user_id=uid).filter(pk=int(raw)).exists():
        raise Http404("No such notification.")
    services.inapp_read(user_id=uid, ids=[int(raw)])
    inbox_url, back = reverse("dashboard:notifications"), request.POST.get("next", "")
    if back.startswith(inbox_url + "?"):  # the page as it was filtered (never another site)
        return redirect(back)
    page = request.POST.get("page", "")
    return redirect(f"{inbox_url}?page={page if page.isdigit() else 1}")


# --- subscriptions -------------------------------------------------------------------------------


def _sub_form_data(post) -> tuple[dict, bool]:
    """The service's input from the form (raw where the service validates it) and tenant_wide."""
    data: dict = {
        "name": post.get("name", "").strip(),
        "events": post.getlist("events"),
        "channel": post.get("channel", ""),
        "actions": post.getlist("actions"),
        "symbols": [s for s in post.get("symbols", "").replace(",", " ").split() if s],
        "timezone": post.get("timezone", "").strip() or "UTC",
        "digest": post.get("digest", Subscription.Digest.OFF),
        "quiet_start": post.get("quiet_start", "").strip() or None,
        "quiet_end": post.get("quiet_end", "").strip() or None,
    }
    confidence = post.get("min_confidence", "").strip()
    if confidence:
        try:
            data["min_confidence"] = float(confidence)
        except ValueError:
            data["min_confidence"] = confidence  # refused by the service, with what is allowed
    channel = data["channel"]
    if channel == Channel.EMAIL and post.get("email", "").strip():
        data["email"] = post.get("email", "").strip()
    field = {Channel.TELEGRAM: "telegram_chat", Channel.WEBHOOK: "webhook"}.get(channel)
    if field:
        raw = post.get(field, "").strip()
        data[field] = int(raw) if raw.isdigit() else raw  # not an id: refused by the service
    return data, post.get("tenant_wide") == "on"


WHOSE_LABELS = (("mine", "Yours"), ("tenant", "Tenant-wide"), ("others", "Members'"))


def _subscription_list_spec(uid: int, admin: bool) -> ListSpec:
    whose = {"mine": Q(user_id=uid), "tenant": Q(user_id=None), "others": Q(user_id__isnull=False) & ~Q(user_id=uid)}
    return ListSpec(
        "subscriptions",
        "subscriptions",
        search=Search(("name", "email"), "Name or e-mail address"),
        filters=(
            Choice("channel", "Channel", [(c.value, CHANNEL_LABELS[c.value]) for c in Channel]),
            Choice("event", "Event", [(name, EVENTS[name].label) for name in SUBSCRIBABLE],
                   apply=lambda rows, v: rows.filter(events__contains=[v])),
            Choice.either("state", "State", ("enabled", "Enabled"), ("disabled", "Disabled"), Q(enabled=True)),
            Choice("whose", "Whose", WHOSE_LABELS if admin else WHOSE_LABELS[:2], when=whose),
        ),
    )  # fmt: skip


def _subscriptions_context(request, *, form: dict | None = None, error: ApplicationError | None = None) -> dict:
    admin = can(request, Role.ADMIN)
    uid = request.user.pk
    rows = selectors.subscriptions_visible(user_id=uid, is_admin=admin).select_related("telegram_chat__bot")
    listed = _subscription_list_spec(uid, admin).apply(request, rows.order_by("-id"))
    subs = listed.rows
    chats = TelegramChat.objects.select_related("bot").order_by("bot__username", "title")
    if not admin:
        chats = chats.filter(user_id=uid)
    owners = _emails({s.user_id for s in subs if s.user_id})
    return {
        "listed": listed,
        "subs": [
            {
                "s": s,
                "mine": s.user_id == uid,
                "owner": owners.get(s.user_id, f"member #{s.user_id}") if s.user_id else "",
                "can_change": admin or s.user_id == uid,
            }
            for s in subs
        ],  # fmt: skip
        "events": [(name, EVENTS[name].label) for name in SUBSCRIBABLE],
        "event_labels": {name: spec.label for name, spec in EVENTS.items()},
        "channels": [(c.value, CHANNEL_LABELS[c.value]) for c in Channel if admin or c != Channel.WEBHOOK],
        "chats": list(chats),
        "webhooks": list(WebhookEndpoint.objects.all()) if admin else [],
        "actions": ACTIONS,
        "digests": Subscription.Digest.values,
        "can_admin": admin,
        "my_email": request.user.email,
        "form": form or {"channel": Channel.INAPP, "timezone": "UTC", "digest": "off", "actions": ["BUY", "SELL"]},
        "error": error,
        "error_fields": set((error.details or {}).keys()) if error else set(),
    }


def _emails(user_ids: set[int]) -> dict[int, str]:
    from accounts.models import User

    if not user_ids:
        return {}
    return dict(User.objects.filter(pk__in=user_ids).values_list("pk", "email"))


@tenant_page()
def subscriptions(request):
    if request.method != "POST":
        return render(request, "dashboard/notification_subscriptions.html", _subscriptions_context(request))
    data, tenant_wide = _sub_form_data(request.POST)
    try:
        sub = services.subscription_create(
            data=data, user_id=request.user.pk, tenant_wide=tenant_wide, is_admin=can(request, Role.ADMIN),
            actor=request.user,
        )  # fmt: skip
    except ApplicationError as exc:
        # the form again as it was filled
        raw = {k: request.POST.get(k, "") for k in ("min_confidence", "email", "telegram_chat", "webhook")}
        form = {**data, **raw, "tenant_wide": tenant_wide, "symbols": " ".join(data["symbols"])}
        context = _subscriptions_context(request, form=form, error=exc)
        return render(request, "dashboard/notification_subscriptions.html", context, status=_error_status(exc))
    messages.success(request, f"Subscribed: {sub} ({'whole tenant' if sub.user_id is None else 'you'}).")
    return redirect("dashboard:notification-subscriptions")


def _own_subscription(request, pk: int) -> Subscription | None:
    """The subscription if this member may change it; None: not allowed (a tenant-wide one, for a
    non-admin); another member's is not found (as in the API)."""
    try:
        sub = services.subscription_get(pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    if can(request, Role.ADMIN) or sub.user_id == request.user.pk:
        return sub
    if sub.user_id is None:
        return None
    raise Http404("No such subscription.")


@require_POST
@tenant_page()
def subscription_action(request, subscription_id: int, action: str):
    """``toggle`` (enable/disable), ``delete`` or ``test`` (send a test message now)."""
    if action not in ("toggle", "delete", "test"):
        raise Http404
    sub = _own_subscription(request, subscription_id)
    if sub is None:
        return forbidden(request, Role.ADMIN)
    try:
        if action == "toggle":
            sub = services.subscription_update(
                sub=sub, data={"enabled": not sub.enabled}, is_admin=can(request, Role.ADMIN), actor=request.user
            )
            messages.success(request, f"'{sub}' {'enabled' if sub.enabled else 'disabled'}.")
        elif action == "delete":
            label = str(sub)
            services.subscription_delete(sub=sub, actor=request.user)
            messages.success(request, f"Unsubscribed: {label}.")
        else:
            target = f"inapp:{request.user.pk}" if sub.channel == Channel.INAPP and sub.user_id is None else sub.target
            d = services.test_send(channel=sub.channel, target=target, subscription=sub, actor=request.user)
            if d.status == Delivery.Status.SENT:
                messages.success(request, f"Test message sent to {_target_label(d.target, {}, {})} (delivery #{d.pk}).")
            else:
                messages.error(request, f"Test message not delivered ({d.status}): {d.last_error or 'no answer'}.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("dashboard:notification-subscriptions")


# --- webhooks (admins) ---------------------------------------------------------------------------


WEBHOOK_LIST = ListSpec(
    "webhooks",
    "webhook endpoints",
    search=Search(("name", "url"), "Name or URL"),
    filters=(
        Choice.either("state", "State", ("enabled", "Enabled"), ("disabled", "Disabled"), Q(enabled=True)),
        Dates("created_at", "Added"),
    ),
)  # fmt: skip


def _webhooks_context(request, *, secret: str = "", endpoint=None, form=None, error=None) -> dict:
    return {
        "webhooks": WEBHOOK_LIST.apply(request, WebhookEndpoint.objects.order_by("name")),
        "secret": secret,
        "secret_for": endpoint,
        "form": form or {},
        "error": error,
        "error_fields": set((error.details or {}).keys()) if error else set(),
    }


@tenant_page(Role.ADMIN)
@sensitive_variables("secret")
def webhooks(request):
    if request.method != "POST":
        return render(request, "dashboard/notification_webhooks.html", _webhooks_context(request))
    name, url = request.POST.get("name", "").strip(), request.POST.get("url", "").strip()
    try:
        endpoint, secret = services.webhook_create(name=name, url=url, actor=request.user)
    except ApplicationError as exc:
        context = _webhooks_context(request, form={"name": name, "url": url}, error=exc)
        return render(request, "dashboard/notification_webhooks.html", context, status=_error_status(exc))
    context = _webhooks_context(request, secret=secret, endpoint=endpoint)
    return render(request, "dashboard/notification_webhooks.html", context, status=201)


@require_POST
@tenant_page(Role.ADMIN)
@sensitive_variables("secret")
def webhook_action(request, webhook_id: int, action: str):
    """``toggle`` (enable/disable), ``rotate`` (a new signing secret, shown once) or ``delete``."""
    if action not in ("toggle", "rotate", "delete"):
        raise Http404
    endpoint = WebhookEndpoint.objects.filter(pk=webhook_id).first()
    if endpoint is None:
        raise Http404("No such webhook.")
    if action == "rotate":
        secret = services.webhook_rotate(endpoint=endpoint, actor=request.user)
        return render(
            request,
            "dashboard/notification_webhooks.html",
            _webhooks_context(request, secret=secret, endpoint=endpoint),
        )
    if action == "toggle":
        endpoint = services.webhook_update(
            endpoint=endpoint, data={"enabled": not endpoint.enabled}, actor=request.user
        )
        messages.success(request, f"Webhook '{endpoint.name}' {'enabled' if endpoint.enabled else 'disabled'}.")
    else:
        services.webhook_delete(endpoint=endpoint, actor=request.user)
        messages.success(request, f"Webhook '{endpoint.name}' deleted; its subscriptions went with it.")
    return redirect("dashboard:notification-webhooks")


# --- the delivery log and dead letters -----------------------------------------------------------


def _target_label(target: str, emails: dict[int, str], hooks: dict[int, str]) -> str:
    kind, _, rest = target.partition(":")
    if kind == Channel.INAPP:
        return f"in-app: {emails.get(int(rest), 'member #' + rest) if rest.isdigit() else rest}"
    if kind == Channel.WEBHOOK:
        return f"webhook: {hooks.get(int(rest), '#' + rest) if rest.isdigit() else rest}"
    if kind == Channel.TELEGRAM:
        return f"Telegram chat {rest.partition(':')[2]}"
    return rest or target


def _delivery_list_spec() -> ListSpec:
    return ListSpec(
        "deliveries",
        "deliveries",
        search=Search(("target", "last_error", "note"), "Target or error", "e.g. webhook, an address"),
        filters=(
            Choice("status", "Status", Delivery.Status.choices),
            Choice("channel", "Channel", Channel.choices),
            Choice("event_type", "Event type", [(e, e) for e in sorted(EVENTS)], field="event__type"),
            Dates("created_at", "Sent"),
        ),
        per_page=LOG_PAGE,
    )


@tenant_page()
def deliveries(request):
    admin = can(request, Role.ADMIN)
    mine = None if admin else request.user.pk
    listed = _delivery_list_spec().apply(request, selectors.deliveries(user_id=mine).order_by("-id"))
    status, channel = listed.values.get("status", ""), listed.values.get("channel", "")
    items = listed.rows
    inapp_ids = {int(t[6:]) for t in (d.target for d in items) if t.startswith("inapp:") and t[6:].isdigit()}
    emails = _emails(inapp_ids)
    hooks = (
        dict(WebhookEndpoint.objects.values_list("pk", "name")) if any(d.channel == "webhook" for d in items) else {}
    )
    context = {
        "listed": listed,
        "rows": [{"d": d, "target": _target_label(d.target, emails, hooks)} for d in items],
        "status": status,
        "channel": channel,
        "dead": selectors.deliveries(user_id=mine, status=Delivery.Status.DEAD).count(),
        "can_retry": admin,
    }
    return render(request, "dashboard/notification_deliveries.html", context)


def _back_to_log(request):
    back = request.POST.get("next", "")
    return redirect(
        back if back.startswith(reverse("dashboard:notification-deliveries")) else "dashboard:notification-deliveries"
    )


@require_POST
@tenant_page(Role.ADMIN)
def delivery_retry(request, delivery_id: int):
    try:
        d = services.delivery_retry(delivery_id=delivery_id, actor=request.user)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Delivery #{d.pk} is pending again: queued for sending.")
    return _back_to_log(request)


@require_POST
@tenant_page(Role.ADMIN)
def deliveries_retry_dead(request):
    channel = request.POST.get("channel") or None
    if channel and channel not in Channel.values:
        messages.error(request, f"Channel is one of {', '.join(Channel.values)}.")
        return _back_to_log(request)
    n = services.deliveries_retry_dead(actor=request.user, channel=channel)
    messages.success(
        request, f"{n} dead deliver{'y is' if n == 1 else 'ies are'} pending again." if n else "No dead deliveries."
    )
    return _back_to_log(request)
