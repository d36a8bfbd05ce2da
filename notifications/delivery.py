"""The delivery engine: from an event to messages on their channels, at least once.

1. ``emit`` writes an :class:`Event` in the caller's transaction (an outbox: the event exists
   exactly when the change it reports committed); after commit the fan-out task runs. The beat's
   sweep fans out any event a lost task left behind.
2. ``fanout`` matches the tenant's subscriptions and writes one :class:`Delivery` per target, its
   ``idempotency_key`` the event and the target (a second fan-out adds nothing); messages in quiet
   hours or for a digest are held until ``due_at``.
3. ``deliver`` (one Celery task per message, so a slow or failing channel never holds up another)
   claims the row (pending -> sending) before it sends: a retried, redelivered or duplicated task
   finds the row sent or claimed and sends nothing. Rate limits make it wait without counting an
   attempt; a failure is retried with exponential backoff and full jitter (Retry-After honoured)
   until ``NOTIFY_MAX_ATTEMPTS``, then the delivery is dead (the dead-letter list) until retried by
   hand. A worker that died mid-send leaves a claim that expires; the sweep sends again (at least
   once: receivers can dedupe on the idempotency key every channel carries).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import zoneinfo
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from api.errors import ApplicationError

from . import channels, ratelimit
from .events import EVENTS
from .models import Channel, Delivery, Event, Severity, Subscription

log = logging.getLogger(__name__)

SENDABLE = Q(status=Delivery.Status.PENDING)


@contextmanager
def _bookkeeping():
    """A transaction of the engine's own records (fan-out rows, claims, delivery outcomes). When it
    is the outermost one it commits without waiting for the WAL flush (``synchronous_commit off``:
    ~20 ms less per commit on this machine's disk). A database crash may then forget the last
    fraction of a second of bookkeeping: a claim or a "sent" lost that way means a message may go
    twice, never that one is lost -- the at-least-once the engine promises anyway."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


# --- emit ------------------------------------------------------------------------------------------


def emit(type: str, data: dict, *, severity: str | None = None, dedupe_key: str | None = None) -> Event | None:
    """Record that ``type`` happened, in the current tenant's schema and transaction; fanned out to
    subscriptions after commit. With ``dedupe_key`` the same happening is recorded once (the
    existing event is returned, nothing is sent again)."""
    spec = EVENTS.get(type)
    if spec is None:
        raise ApplicationError("unknown_event", f"Unknown notification event '{type}'.", {"events": sorted(EVENTS)})
    if connection.schema_name == "public":
        raise ApplicationError("no_tenant", "Notifications belong to a tenant; emit inside its schema.", status=500)
    with transaction.atomic():
        if dedupe_key:
            event, created = Event.objects.get_or_create(
                dedupe_key=dedupe_key[:160],
                defaults={"type": type, "data": data, "severity": severity or spec.severity},
            )
        else:
            event, created = Event.objects.create(type=type, data=data, severity=severity or spec.severity), True
        if created:
            _after_commit_fanout(event.pk)
    return event


def _after_commit_fanout(event_id: int) -> None:
    from .tasks import fanout_task

    transaction.on_commit(lambda: _enqueue(fanout_task, event_id))


def _enqueue(task, *args, countdown: float | None = None) -> None:
    try:
        task.apply_async(args=args, countdown=countdown)
    except Exception as exc:  # noqa: BLE001 - the row stands; the sweep enqueues it again
        log.warning("notifications: %s(%s) not queued (%s); the sweep will", task.name, args, exc)


# --- fan-out ---------------------------------------------------------------------------------------


def _local(now: dt.datetime, tz: str) -> dt.datetime:
    try:
        return now.astimezone(zoneinfo.ZoneInfo(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return now.astimezone(dt.UTC)


def quiet_until(sub: Subscription, now: dt.datetime) -> dt.datetime | None:
    """The end of the quiet hours ``now`` falls in (None: not quiet). Windows may wrap midnight."""
    if sub.quiet_start is None or sub.quiet_end is None or sub.quiet_start == sub.quiet_end:
        return None
    local = _local(now, sub.timezone)
    t = local.time().replace(tzinfo=None)
    start, end = sub.quiet_start, sub.quiet_end
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if ends <= local:
        ends += dt.timedelta(days=1)
    return ends.astimezone(dt.UTC)


def digest_due(sub: Subscription, now: dt.datetime) -> dt.datetime | None:
    """When the digest holding a message made ``now`` goes out: the next full hour, or 08:00 local."""
    if sub.digest == Subscription.Digest.HOURLY:
        return now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    if sub.digest == Subscription.Digest.DAILY:
        local = _local(now, sub.timezone)
        due = local.replace(hour=settings.NOTIFY_DAILY_DIGEST_HOUR, minute=0, second=0, microsecond=0)
        if due <= local:
            due += dt.timedelta(days=1)
        return due.astimezone(dt.UTC)
    return None


def matches(sub: Subscription, event: Event) -> bool:
    if event.type not in sub.events:
        return False
    if event.type == "decision":
        data = event.data
        if sub.min_confidence is not None and float(data.get("confidence") or 0) < sub.min_confidence:
            return False
        if sub.symbols and data.get("symbol") not in sub.symbols:
            return False
        if data.get("action") not in (sub.actions or ["BUY", "SELL"]):
            return False
    return True


def _targets(sub: Subscription, members: dict[int, str]) -> list[tuple[str, int | None]]:
    """(target, user) pairs: a tenant-wide in-app subscription reaches every member."""
    if sub.channel == Channel.INAPP and sub.user_id is None:
        return [(f"inapp:{uid}", uid) for uid in members]
    if sub.user_id is not None and sub.user_id not in members:
        return []  # the member left the tenant: their subscriptions fall silent
    if sub.channel == Channel.TELEGRAM and sub.telegram_chat_id is None:
        return []
    if sub.channel == Channel.WEBHOOK and (sub.webhook_id is None or not sub.webhook.enabled):
        return []
    return [(sub.target, sub.user_id)]


def _members() -> dict[int, str]:
    from tenants.models import Membership

    return dict(
        Membership.objects.filter(tenant__schema_name=connection.schema_name, user__is_active=True).values_list(
            "user_id", "user__email"
        )
    )


def fanout(event_id: int, *, now: dt.datetime | None = None) -> int:
    """The event's deliveries written (held or pending) and the pending ones queued; how many new."""
    now = now or timezone.now()
    event = Event.objects.filter(pk=event_id).first()
    if event is None:
        return 0
    subs = list(
        Subscription.objects.filter(enabled=True, events__contains=[event.type]).select_related(
            "telegram_chat", "webhook"
        )
    )
    members = _members() if subs else {}
    rows: dict[str, Delivery] = {}
    critical = event.severity == Severity.CRITICAL
    for sub in subs:
        if not matches(sub, event):
            continue
        for target, _user in _targets(sub, members):
            key = f"{event.pk}:{target}"
            if key in rows:
                continue
            due = None if critical else (quiet_until(sub, now) or digest_due(sub, now))
            rows[key] = Delivery(
                event=event, subscription=sub, channel=sub.channel, target=target, idempotency_key=key,
                status=Delivery.Status.HELD if due else Delivery.Status.PENDING, due_at=due,
            )  # fmt: skip
    with _bookkeeping():
        before = Delivery.objects.filter(event=event).count()
        if rows:
            Delivery.objects.bulk_create(rows.values(), ignore_conflicts=True)
        Event.objects.filter(pk=event.pk, fanned_out_at=None).update(fanned_out_at=now)
        pending = list(
            Delivery.objects.filter(event=event, status=Delivery.Status.PENDING).values_list("pk", "channel")
        )
        # in-app messages are rows of our own: written by the fan-out itself (no task of their own);
        # messages leaving the system each get a task, so a slow channel holds up no other
        _queue_after_commit([pk for pk, channel in pending if channel != Channel.INAPP])
        made = Delivery.objects.filter(event=event).count() - before
    for pk, channel in pending:
        if channel == Channel.INAPP:
            deliver(pk)
    return made


def _queue_after_commit(ids: list[int], countdown: float | None = None) -> None:
    from .tasks import deliver_task

    if ids:
        transaction.on_commit(lambda: [_enqueue(deliver_task, pk, countdown=countdown) for pk in ids])


# --- deliver ---------------------------------------------------------------------------------------


def backoff_s(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)], never
    sooner than the channel's Retry-After."""
    ceiling = min(settings.NOTIFY_BACKOFF_CAP_S, settings.NOTIFY_BACKOFF_BASE_S * (2 ** max(0, attempt - 1)))
    delay = random.uniform(0, ceiling)
    return max(delay, float(retry_after or 0))


def _claim(delivery_id: int, now: dt.datetime) -> bool:
    """pending (due) -> sending, or a claim a dead worker left expired; False when another worker
    holds it or it needs no sending (sent, dead, held, digested)."""
    due = Q(next_attempt_at=None) | Q(next_attempt_at__lte=now + dt.timedelta(seconds=1))
    stale = Q(status=Delivery.Status.SENDING, claimed_until__lt=now)
    return bool(
        Delivery.objects.filter(pk=delivery_id)
        .filter((SENDABLE & due) | stale)
        .update(status=Delivery.Status.SENDING, claimed_until=now + dt.timedelta(seconds=settings.NOTIFY_CLAIM_S))
    )


def deliver(delivery_id: int) -> str:
    """Send one message if it is due and nobody else is; returns what happened (for the task result)."""
    now = timezone.now()
    with _bookkeeping():
        claimed = _claim(delivery_id, now)
    if not claimed:
        return "skipped"
    d = Delivery.objects.select_related("event", "subscription__telegram_chat__bot", "subscription__webhook").get(
        pk=delivery_id
    )
    booked, wait = ratelimit.reserve(
        ratelimit.limits_for(d.channel, d.target, connection.schema_name), book_within=settings.NOTIFY_RATE_SLEEP_S
    )
    if booked and wait > 0:  # a slot a moment away is ours: wait for it here
        time.sleep(wait)
    elif not booked:  # not an attempt: back in the queue for about when the rate allows it
        if _collapse_backlog(d, now):
            return "collapsed"
        with _bookkeeping():
            Delivery.objects.filter(pk=d.pk, status=Delivery.Status.SENDING).update(
                status=Delivery.Status.PENDING, next_attempt_at=now + dt.timedelta(seconds=wait), claimed_until=None
            )
            _queue_after_commit([d.pk], countdown=wait)
        return "rate_limited"
    started = time.perf_counter()
    try:
        if d.channel == Channel.INAPP:  # a row of our own: written with the outcome, in one commit
            with _bookkeeping():
                _sent(d, channels.send(d), started)
            return "sent"
        result = channels.send(d)
    except channels.DeliveryError as exc:
        return _failed(d, exc, (time.perf_counter() - started) * 1000)
    except Exception as exc:  # noqa: BLE001 - a bug in a channel is a failed attempt, not a lost message
        log.exception("notifications: delivery %s raised", d.pk)
        error = channels.DeliveryError(f"{type(exc).__name__}: {exc}")
        return _failed(d, error, (time.perf_counter() - started) * 1000)
    with _bookkeeping():
        _sent(d, result, started)
    return "sent"


def _collapse_backlog(d: Delivery, now: dt.datetime) -> bool:
    """Messages arriving faster than their target may receive them (a chat's one a second) would
    queue without end: past ``NOTIFY_BACKLOG_DIGEST`` waiting for one target, the non-critical ones
    (this one included) are held for the next sweep, which sends them as one digest."""
    waiting = Delivery.objects.filter(target=d.target, status=Delivery.Status.PENDING).exclude(
        event__severity=Severity.CRITICAL
    )
    if d.event.severity == Severity.CRITICAL or waiting.count() < settings.NOTIFY_BACKLOG_DIGEST:
        return False
    with _bookkeeping():
        waiting.update(status=Delivery.Status.HELD, due_at=now, claimed_until=None, note="collapsed into a digest")
        Delivery.objects.filter(pk=d.pk, status=Delivery.Status.SENDING).update(
            status=Delivery.Status.HELD, due_at=now, claimed_until=None, note="collapsed into a digest"
        )
    return True


def _sent(d: Delivery, result: channels.Sent, started: float) -> None:
    done = timezone.now()
    Delivery.objects.filter(pk=d.pk).update(
        status=Delivery.Status.SENT, attempts=d.attempts + 1, sent_at=done, claimed_until=None, last_error="",
        duration_ms=(time.perf_counter() - started) * 1000, provider_id=(result.provider_id or "")[:120],
        latency_ms=(done - d.event.created_at).total_seconds() * 1000, note=result.note[:300],
    )  # fmt: skip


def _failed(d: Delivery, exc: channels.DeliveryError, duration_ms: float) -> str:
    attempts = d.attempts + 1
    dead = exc.permanent or attempts >= settings.NOTIFY_MAX_ATTEMPTS
    fields = {"attempts": attempts, "last_error": str(exc)[:500], "duration_ms": duration_ms, "claimed_until": None}
    if dead:
        with _bookkeeping():
            Delivery.objects.filter(pk=d.pk).update(status=Delivery.Status.DEAD, next_attempt_at=None, **fields)
        log.warning("notifications: delivery %s dead after %d attempts: %s", d.pk, attempts, exc)
        return "dead"
    delay = backoff_s(attempts, exc.retry_after)
    with _bookkeeping():
        Delivery.objects.filter(pk=d.pk).update(
            status=Delivery.Status.PENDING, next_attempt_at=timezone.now() + dt.timedelta(seconds=delay), **fields
        )
        _queue_after_commit([d.pk], countdown=delay)
    return "retrying"


def retry(delivery_id: int) -> Delivery:
    """A dead delivery back in the queue (by hand, from the dashboard or the API)."""
    with transaction.atomic():
        d = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
        if d is None:
            from api.errors import NotFound

            raise NotFound("delivery", {"delivery_id": delivery_id})
        if d.status != Delivery.Status.DEAD:
            raise ApplicationError(
                "not_dead", f"Only dead deliveries are retried by hand; this one is {d.status}.", {"status": d.status},
                status=409,
            )  # fmt: skip
        d.status, d.next_attempt_at, d.manual_retries, d.attempts = (
            Delivery.Status.PENDING,
            None,
            d.manual_retries + 1,
            0,
        )
        d.save(update_fields=["status", "next_attempt_at", "manual_retries", "attempts", "updated_at"])
        _queue_after_commit([d.pk])
    return d


# --- held messages: quiet hours and digests ---------------------------------------------------------


def release_held(*, now: dt.datetime | None = None) -> int:
    """Held deliveries whose time came: one alone goes out as it is, several to the same target go
    out as one digest (an event of its own). Returns how many messages were queued."""
    now = now or timezone.now()
    queued = 0
    with transaction.atomic():
        held = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=Delivery.Status.HELD, due_at__lte=now)
            .select_related("event")
            .order_by("id")
        )
        groups: dict[tuple[str, str], list[Delivery]] = {}
        for d in held:
            groups.setdefault((d.channel, d.target), []).append(d)
        for (channel, target), items in groups.items():
            if len(items) == 1:
                Delivery.objects.filter(pk=items[0].pk).update(status=Delivery.Status.PENDING, due_at=None)
                _queue_after_commit([items[0].pk])
                queued += 1
                continue
            from .render import title_of

            data = {
                "count": len(items),
                "items": [{"type": d.event.type, "title": title_of(d.event), "at": d.event.created_at.isoformat()}
                          for d in items],
            }  # fmt: skip
            event = Event.objects.create(type="digest", data=data, dedupe_key=f"digest:{items[0].pk}-{items[-1].pk}")
            digest = Delivery.objects.create(
                event=event, subscription=items[-1].subscription, channel=channel, target=target,
                idempotency_key=f"{event.pk}:{target}",
            )  # fmt: skip
            Event.objects.filter(pk=event.pk).update(fanned_out_at=now)
            Delivery.objects.filter(pk__in=[d.pk for d in items]).update(status=Delivery.Status.DIGESTED, digest=digest)
            _queue_after_commit([digest.pk])
            queued += 1
    return queued


def sweep(*, now: dt.datetime | None = None) -> dict:
    """Beat, per tenant: events a lost task never fanned out, due deliveries a lost task never sent
    (or a dead worker left claimed), and held messages whose time came."""
    now = now or timezone.now()
    late = now - dt.timedelta(seconds=settings.NOTIFY_SWEEP_GRACE_S)
    events = list(Event.objects.filter(fanned_out_at=None, created_at__lt=late).values_list("pk", flat=True)[:500])
    for pk in events:
        fanout(pk, now=now)
    stuck = Q(status=Delivery.Status.PENDING) & (
        Q(next_attempt_at__lt=late) | Q(next_attempt_at=None, updated_at__lt=late)
    ) | Q(status=Delivery.Status.SENDING, claimed_until__lt=now)
    ids = list(Delivery.objects.filter(stuck).values_list("pk", flat=True)[:1000])
    with transaction.atomic():
        _queue_after_commit(ids)
    released = release_held(now=now)
    return {"events": len(events), "requeued": len(ids), "released": released}
