"""Notifications: what happened (``Event``, a transactional outbox), who wants to hear of it and how
(``Subscription`` to a channel target), and each message sent (``Delivery``: the delivery log and
the dead-letter list). Channel targets: a tenant's Telegram bot and its chats, signed webhook
endpoints, e-mail addresses, and the in-app notification centre (``InAppNotification``).

Secrets (bot tokens, webhook signing secrets) live in the credentials vault
(``compliance.Credential``); these rows only name them."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Channel(models.TextChoices):
    TELEGRAM = "telegram"
    WEBHOOK = "webhook"
    EMAIL = "email"
    INAPP = "inapp"


class Severity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"  # sent through quiet hours


class TelegramBot(models.Model):
    """A tenant's own bot (from @BotFather). Its token is the vault credential ``credential``; the
    inbound webhook is ``/hooks/telegram/<tenant>/<id>/`` and Telegram proves itself with the
    secret token it was given in ``setWebhook`` (stored hashed here)."""

    name = models.SlugField(max_length=64, unique=True)
    credential = models.ForeignKey("compliance.Credential", on_delete=models.PROTECT, related_name="+")
    bot_id = models.BigIntegerField()
    username = models.CharField(max_length=64)
    webhook_secret_sha256 = models.CharField(max_length=64, blank=True)
    webhook_url = models.CharField(max_length=500, blank=True)
    webhook_error = models.CharField(max_length=300, blank=True)
    created_by = models.CharField(max_length=254)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"@{self.username}"


class TelegramChat(models.Model):
    """A chat the bot writes to. ``user_id`` is the member the chat acts as when it sends commands
    (their role decides what it may do); without one the chat only receives."""

    bot = models.ForeignKey(TelegramBot, on_delete=models.CASCADE, related_name="chats")
    chat_id = models.CharField(max_length=40)  # an integer, or @channelname
    title = models.CharField(max_length=120, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)  # the test message went through
    created_by = models.CharField(max_length=254)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("bot", "chat_id")
        constraints = [models.UniqueConstraint(fields=["bot", "chat_id"], name="telegram_chat_once")]

    def __str__(self) -> str:
        return f"{self.bot} -> {self.title or self.chat_id}"


class WebhookEndpoint(models.Model):
    """An HTTP endpoint that receives events as signed JSON (``notifications.signing``); the signing
    secret is the vault credential ``credential``, shown once when the endpoint is made."""

    name = models.SlugField(max_length=64, unique=True)
    url = models.URLField(max_length=500)
    credential = models.ForeignKey("compliance.Credential", on_delete=models.PROTECT, related_name="+")
    enabled = models.BooleanField(default=True)
    created_by = models.CharField(max_length=254)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    """Which events go to which channel target, for one member (``user_id``) or the whole tenant
    (``user_id`` null: created by an admin). Decision events are filtered by confidence, symbols and
    actions; quiet hours hold non-critical messages until they end; a digest collects messages and
    sends one summary per period."""

    class Digest(models.TextChoices):
        OFF = "off"
        HOURLY = "hourly"
        DAILY = "daily"

    name = models.CharField(max_length=120, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    events = ArrayField(models.CharField(max_length=40))
    channel = models.CharField(max_length=10, choices=Channel.choices)
    telegram_chat = models.ForeignKey(TelegramChat, null=True, blank=True, on_delete=models.CASCADE)
    webhook = models.ForeignKey(WebhookEndpoint, null=True, blank=True, on_delete=models.CASCADE)
    email = models.EmailField(blank=True)
    min_confidence = models.FloatField(null=True, blank=True)
    symbols = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    actions = ArrayField(models.CharField(max_length=4), default=list, blank=True)
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    digest = models.CharField(max_length=8, choices=Digest.choices, default=Digest.OFF)
    enabled = models.BooleanField(default=True)
    created_by = models.CharField(max_length=254)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.name or f"{', '.join(self.events)} -> {self.channel}"

    @property
    def target(self) -> str:
        """What the message is addressed to, as the delivery log shows it."""
        if self.channel == Channel.TELEGRAM:
            return f"telegram:{self.telegram_chat.bot_id}:{self.telegram_chat.chat_id}"
        if self.channel == Channel.WEBHOOK:
            return f"webhook:{self.webhook_id}"
        if self.channel == Channel.EMAIL:
            return f"email:{self.email.lower()}"
        return f"inapp:{self.user_id}"


class Event(models.Model):
    """Something worth telling, written in the same transaction as the change it reports (so it
    exists exactly when the change does) and fanned out to subscriptions after commit.
    ``dedupe_key`` makes emitting idempotent: the same happening is one event."""

    type = models.CharField(max_length=40)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.INFO)
    data = models.JSONField(default=dict)
    dedupe_key = models.CharField(max_length=160, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    fanned_out_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["fanned_out_at"], name="notif_event_pending", condition=models.Q(fanned_out_at=None))
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"


class Delivery(models.Model):
    """One message to one target: the delivery log. ``idempotency_key`` (event and target) makes a
    message unique however often the fan-out or the task runs; a task sends only after claiming a
    row in a sendable state, so a retried or redelivered task never sends a delivered message again.
    Dead deliveries are the dead-letter list (retry by hand)."""

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting to be sent (or for its next attempt)
        SENDING = "sending"  # claimed by a worker until ``claimed_until``
        SENT = "sent"
        HELD = "held"  # quiet hours or digest: sent (in a digest) at ``due_at``
        DIGESTED = "digested"  # went out inside the digest ``digest``
        DEAD = "dead"  # gave up: the dead-letter list

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    subscription = models.ForeignKey(Subscription, null=True, blank=True, on_delete=models.SET_NULL)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    target = models.CharField(max_length=200)
    idempotency_key = models.CharField(max_length=260, unique=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    manual_retries = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)  # held: when it goes out
    digest = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="items")
    last_error = models.CharField(max_length=500, blank=True)
    note = models.CharField(max_length=300, blank=True)  # e.g. "template error: plain text sent"
    provider_id = models.CharField(max_length=120, blank=True)  # the message id the channel gave
    duration_ms = models.FloatField(null=True, blank=True)  # the last attempt's call
    latency_ms = models.FloatField(null=True, blank=True)  # from the event to delivered
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="notif_delivery_due"),
            models.Index(fields=["status", "due_at"], name="notif_delivery_held"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.target} ({self.status})"


class InAppNotification(models.Model):
    """A message in a member's notification centre (pushed over their WebSocket when it arrives)."""

    user_id = models.BigIntegerField(db_index=True)
    delivery = models.OneToOneField(Delivery, on_delete=models.CASCADE, related_name="inapp")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.INFO)
    url = models.CharField(max_length=300, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-id",)
        indexes = [models.Index(fields=["user_id", "read_at"], name="notif_inapp_unread")]

    def __str__(self) -> str:
        return self.title
