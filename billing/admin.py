from django.contrib import admin

from .models import Invoice, Payment, PaymentNotification, Subscription, SubscriptionEvent


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("tenant", "plan", "status", "current_period_start", "current_period_end")
    list_filter = ("status", "plan")
    search_fields = ("tenant__slug",)


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0
    can_delete = False
    readonly_fields = ("order_id", "provider", "status", "gross_amount", "transaction_id", "payment_type", "created_at")
    fields = readonly_fields


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ("number", "tenant", "plan", "total", "currency", "status", "issued_at", "due_at", "paid_at")
    list_filter = ("status", "plan")
    search_fields = ("number", "tenant__slug")
    readonly_fields = ("number", "tenant", "plan", "period_start", "period_end", "currency", "lines", "total",
                       "issued_at", "due_at", "paid_at")  # fmt: skip
    inlines = (PaymentInline,)


@admin.register(PaymentNotification)
class PaymentNotificationAdmin(admin.ModelAdmin):
    """Every notification the gateway (or anyone) sent, with what was done about it."""

    list_display = ("received_at", "order_id", "transaction_status", "outcome", "signature_valid", "remote_addr")
    list_filter = ("outcome", "signature_valid", "transaction_status")
    search_fields = ("order_id",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SubscriptionEvent)
class SubscriptionEventAdmin(admin.ModelAdmin):
    list_display = ("at", "account", "kind", "from_plan", "to_plan", "mrr_before", "mrr_after", "sample")
    list_filter = ("kind", "sample")
    search_fields = ("account",)
