"""Compliance staff review, read only in the admin's active tenant, who was told what and when:
the delivery log (status, attempts, errors) and the subscriptions behind it. Bot tokens and webhook
secrets are vault credentials and never shown here."""

from __future__ import annotations

from django.contrib import admin

from tenants.admin import ReadOnlyAdminMixin, TenantScopedModelAdmin

from .models import Delivery, Subscription


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, TenantScopedModelAdmin):
    list_display = ("id", "created_at", "event_type", "channel", "target", "status", "attempts", "latency_ms",
                    "last_error")  # fmt: skip
    list_filter = ("status", "channel")
    search_fields = ("target", "idempotency_key", "last_error")
    date_hierarchy = "created_at"
    list_select_related = ("event",)
    fields = ("event", "event_type", "subscription", "channel", "target", "idempotency_key", "status", "attempts",
              "manual_retries", "next_attempt_at", "due_at", "digest", "last_error", "note", "provider_id",
              "duration_ms", "latency_ms", "created_at", "sent_at")  # fmt: skip
    readonly_fields = fields

    @admin.display(description="Event")
    def event_type(self, obj: Delivery) -> str:
        return obj.event.type


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdminMixin, TenantScopedModelAdmin):
    list_display = ("id", "name", "user_id", "channel", "events", "min_confidence", "digest", "enabled", "created_by",
                    "created_at")  # fmt: skip
    list_filter = ("channel", "digest", "enabled")
    search_fields = ("name", "created_by", "email")
    fields = ("name", "user_id", "events", "channel", "telegram_chat", "webhook", "email", "min_confidence",
              "symbols", "actions", "quiet_start", "quiet_end", "timezone", "digest", "enabled", "created_by",
              "created_at")  # fmt: skip
    readonly_fields = fields
