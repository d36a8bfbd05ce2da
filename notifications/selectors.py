"""Reads of the notifications area: subscriptions a requester may see, the delivery log, and a
member's notification centre."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from .channels import inapp_payload  # noqa: F401 - the in-app message as the API and the socket show it
from .models import Delivery, InAppNotification, Subscription


def subscriptions_visible(*, user_id: int | None, is_admin: bool) -> QuerySet[Subscription]:
    rows = Subscription.objects.select_related("telegram_chat", "webhook")
    return rows if is_admin else rows.filter(Q(user_id=user_id) | Q(user_id=None))


def deliveries(*, user_id: int | None = None, status: str | None = None, channel: str | None = None,
               event_type: str | None = None) -> QuerySet[Delivery]:  # fmt: skip
    """The delivery log; ``user_id``: only what went to that member's own subscriptions."""
    rows = Delivery.objects.select_related("event")
    if user_id is not None:
        rows = rows.filter(Q(subscription__user_id=user_id) | Q(target=f"inapp:{user_id}"))
    if status:
        rows = rows.filter(status=status)
    if channel:
        rows = rows.filter(channel=channel)
    if event_type:
        rows = rows.filter(event__type=event_type)
    return rows


def dead_letters() -> QuerySet[Delivery]:
    return Delivery.objects.filter(status=Delivery.Status.DEAD).select_related("event")


def inbox(*, user_id: int, unread: bool = False) -> QuerySet[InAppNotification]:
    rows = InAppNotification.objects.filter(user_id=user_id)
    return rows.filter(read_at=None) if unread else rows


def unread_count(*, user_id: int) -> int:
    return InAppNotification.objects.filter(user_id=user_id, read_at=None).count()
