"""The compliance review index (public schema): one row per decision of every tenant, so staff
filter and review decisions across tenants in one place. The decision itself stays in its tenant's
schema (``intelligence.Decision``); a row here copies the fields staff filter on, the flags raised
by the rules in force when it was indexed, and the review. Kept five years (``RETENTION``), apart
from market-data retention."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ValidationError
from django.db import models


class FlagRule(models.Model):
    """A rule that flags decisions for review; staff tune them in the admin. A change applies to
    decisions indexed after it (and to those re-flagged with the admin action)."""

    class Kind(models.TextChoices):
        AGAINST_RISK = "against_risk", "BUY/SELL against the risk agent (it vetoed that side or voted the other way)"
        LOW_CONFIDENCE = "low_confidence", "BUY/SELL with confidence below a threshold"
        UNUSUAL_SIZE = "unusual_size", "BUY/SELL size above N x the tenant's recent median, or above a cap"
        CONTROL_BLOCK = "control_block", "blocked by a pre-trade control (vetoed_by starts with a prefix)"

    code = models.SlugField(max_length=40, unique=True, help_text="Stored in each flagged item; not changeable.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    min_confidence = models.FloatField(
        null=True, blank=True, help_text="low_confidence: flag when confidence is below this (0-1), e.g. 0.55."
    )
    size_multiple = models.FloatField(
        null=True,
        blank=True,
        help_text="unusual_size: flag when size exceeds this many times the tenant's median size (blank: off).",
    )
    median_window = models.PositiveIntegerField(
        null=True, blank=True, help_text="unusual_size: the median is taken over this many recent BUY/SELL decisions."
    )
    size_cap = models.FloatField(
        null=True, blank=True, help_text="unusual_size: flag any size above this fraction of equity (blank: off)."
    )
    veto_prefix = models.CharField(
        max_length=32, blank=True, help_text='control_block: vetoed_by values starting with this, e.g. "control:".'
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        errors = {}
        K = self.Kind
        if self.kind == K.LOW_CONFIDENCE and (self.min_confidence is None or not 0 < self.min_confidence <= 1):
            errors["min_confidence"] = "Give the confidence threshold, between 0 and 1 (e.g. 0.55)."
        if self.kind == K.UNUSUAL_SIZE:
            if self.size_multiple is None and self.size_cap is None:
                errors["size_multiple"] = "Give a multiple of the median size, an absolute cap, or both."
            if self.size_multiple is not None and self.size_multiple <= 1:
                errors["size_multiple"] = "The multiple must be above 1 (e.g. 3)."
            if self.size_multiple is not None and not self.median_window:
                errors["median_window"] = "Give how many recent decisions the median covers (e.g. 500)."
            if self.size_cap is not None and self.size_cap <= 0:
                errors["size_cap"] = "The cap must be above 0 (a fraction of equity, e.g. 0.25)."
        if self.kind == K.CONTROL_BLOCK and not self.veto_prefix:
            errors["veto_prefix"] = 'Give the prefix of control vetoes, e.g. "control:".'
        if errors:
            raise ValidationError(errors)


class ReviewItem(models.Model):
    """One tenant decision in the review index; filled by ``review.services.review_index``."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="review_items")
    decision_id = models.BigIntegerField()
    ts = models.DateTimeField(help_text="The bar's open time.")
    decided_at = models.DateTimeField()
    symbol = models.CharField(max_length=32)
    timeframe = models.CharField(max_length=4)
    action = models.CharField(max_length=4)
    confidence = models.FloatField()
    size = models.FloatField()
    flow = models.CharField(max_length=80, blank=True)
    model_version = models.CharField(max_length=80, blank=True)
    vetoed_by = models.CharField(max_length=64, blank=True)
    flags = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    indexed_at = models.DateTimeField(auto_now_add=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    review_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-ts", "-decision_id"]
        default_permissions = ("view",)  # rows are written by the indexer only
        permissions = [
            ("review_reviewitem", "Can mark decisions reviewed"),
            ("export_reviewitem", "Can export decisions under review"),
            ("reflag_reviewitem", "Can recompute the flags of decisions under review"),
        ]
        constraints = [models.UniqueConstraint(fields=["tenant", "decision_id"], name="review_item_once")]
        indexes = [
            models.Index(fields=["-ts", "-decision_id"], name="review_item_ts"),
            models.Index(fields=["tenant", "-ts"], name="review_item_tenant_ts"),
            models.Index(fields=["symbol", "-ts"], name="review_item_symbol_ts"),
            GinIndex(fields=["flags"], name="review_item_flags"),
            # the work queue: flagged and not yet reviewed
            models.Index(
                fields=["-ts"],
                name="review_item_open_flagged",
                condition=models.Q(reviewed_at=None) & ~models.Q(flags=[]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}#{self.decision_id} {self.symbol} {self.action}"

    @property
    def reviewed(self) -> bool:
        return self.reviewed_at is not None


class IndexState(models.Model):
    """Per tenant: the highest decision id indexed (the indexer's watermark)."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, primary_key=True)
    last_decision_id = models.BigIntegerField(default=0)
    indexed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.tenant_id} up to #{self.last_decision_id}"
