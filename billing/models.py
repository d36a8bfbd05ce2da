"""Subscriptions, invoices and payments (public schema). Money is Decimal, never float."""

import uuid

from django.db import models

from tenants.models import Plan, Tenant

MONEY = {"max_digits": 16, "decimal_places": 2}


class Subscription(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        PAST_DUE = "past_due"  # an invoice is overdue; the grace period runs
        CANCELED = "canceled"

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.tenant} on {self.plan.code} ({self.status})"


class SubscriptionEvent(models.Model):
    """A change of an account's recurring revenue: what revenue analytics (MRR movements, churn,
    cohorts) is computed from. ``tenant`` is null for sample history seeded for the demo
    (``account`` names it)."""

    class Kind(models.TextChoices):
        NEW = "new"
        UPGRADE = "upgrade"
        DOWNGRADE = "downgrade"
        CHURN = "churn"  # to no revenue (free or canceled)
        REACTIVATION = "reactivation"  # back to revenue after a churn

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    account = models.CharField(max_length=64)
    at = models.DateTimeField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    from_plan = models.CharField(max_length=32, blank=True)
    to_plan = models.CharField(max_length=32, blank=True)
    mrr_before = models.DecimalField(**MONEY)
    mrr_after = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="IDR")
    sample = models.BooleanField(default=False)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["at"]), models.Index(fields=["account", "at"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d} {self.account} {self.kind}"


class Invoice(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        PAID = "paid"
        VOID = "void"
        UNCOLLECTIBLE = "uncollectible"  # dunning gave up: the tenant moved to free

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(max_length=32, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="invoices")
    plan = models.CharField(max_length=32)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    currency = models.CharField(max_length=3, default="IDR")
    lines = models.JSONField(default=list)  # [{description, unit, quantity, unit_price, amount}] amounts as strings
    total = models.DecimalField(**MONEY)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.OPEN)
    issued_at = models.DateTimeField(auto_now_add=True)
    due_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "period_start"], name="invoice_once_per_period")]

    def __str__(self) -> str:
        return f"{self.number} {self.total} {self.currency} {self.status}"


class Payment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        FAILED = "failed"  # deny
        CANCELED = "canceled"
        EXPIRED = "expired"
        REFUNDED = "refunded"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    provider = models.CharField(max_length=16)
    order_id = models.CharField(max_length=50, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    gross_amount = models.DecimalField(**MONEY)
    token = models.CharField(max_length=100, blank=True)
    redirect_url = models.URLField(max_length=300, blank=True)
    transaction_id = models.CharField(max_length=64, blank=True)
    payment_type = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.order_id} {self.status}"


class PaymentNotification(models.Model):
    """Every notification received, accepted or not (forged and replayed ones included)."""

    class Outcome(models.TextChoices):
        APPLIED = "applied"
        DUPLICATE = "duplicate"  # nothing new (a replay, or a status already recorded)
        IGNORED = "ignored"  # a status that may not follow the current one
        REJECTED = "rejected"  # bad signature, unknown order, or the gateway disagrees

    provider = models.CharField(max_length=16)
    order_id = models.CharField(max_length=64, blank=True)
    transaction_status = models.CharField(max_length=32, blank=True)
    status_code = models.CharField(max_length=8, blank=True)
    gross_amount = models.CharField(max_length=32, blank=True)
    signature_valid = models.BooleanField(default=False)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    detail = models.CharField(max_length=300, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.order_id} {self.transaction_status} {self.outcome}"
