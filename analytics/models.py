"""Usage of one tenant, flushed from the Redis meter (``tenants.metering``) by
``analytics.services.meter_flush``: counts per hour and per day (the rollup the pages read),
latency histograms per endpoint and hour, and the flushed batches (each applied once)."""

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Kind(models.TextChoices):
    REQUEST = "request"  # name: endpoint; status: 2xx/3xx/4xx/429/5xx
    UNIT = "unit"  # name: decision, prediction, training_trial, backtest_bar


class UsageHourly(models.Model):
    hour = models.DateTimeField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    name = models.CharField(max_length=120)
    status = models.CharField(max_length=4, blank=True)
    api_key_id = models.BigIntegerField(default=0)  # 0: none (a person's token)
    user_id = models.BigIntegerField(default=0)  # 0: none (an API key)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "kind", "name", "status", "api_key_id", "user_id"], name="usage_hourly_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.kind} {self.name} {self.count}"


class UsageDaily(models.Model):
    day = models.DateField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    name = models.CharField(max_length=120)
    status = models.CharField(max_length=4, blank=True)
    api_key_id = models.BigIntegerField(default=0)
    user_id = models.BigIntegerField(default=0)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "kind", "name", "status", "api_key_id", "user_id"], name="usage_daily_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.kind} {self.name} {self.count}"


class LatencyHourly(models.Model):
    """Per endpoint and hour: a histogram over ``tenants.metering.LATENCY_BINS_MS`` (+ one bin
    above the last bound) and the total, so p50/p99 and the mean come from rollups, never scans."""

    hour = models.DateTimeField()
    endpoint = models.CharField(max_length=120)
    bins = ArrayField(models.BigIntegerField())
    total_us = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "endpoint"], name="latency_hourly_once")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.endpoint}"


class MeterBatch(models.Model):
    """A Redis hash flushed into the tables above: written in the same transaction, so a flush
    retried after a crash applies each batch once."""

    name = models.CharField(max_length=160, unique=True)
    fields = models.PositiveIntegerField(default=0)
    applied_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class PerformanceDaily(models.Model):
    """Live performance per market day (the decisions' bar time), recomputed for the days whose
    decisions resolved since the last run (``analytics.services.performance_rollup``).

    kind "consensus" (name ""): decisions, resolved, actionable resolved and right, paper P&L net of
    fees of the fills those decisions made, decision latency p50/p99; "model" (name: version ref):
    resolved and right; "agent" (name: agent): directional votes resolved and right."""

    day = models.DateField()
    kind = models.CharField(max_length=10)
    name = models.CharField(max_length=80, blank=True)
    decisions = models.IntegerField(default=0)
    resolved = models.IntegerField(default=0)
    hits = models.IntegerField(default=0)
    pnl = models.FloatField(default=0.0)
    latency_p50_ms = models.FloatField(null=True)
    latency_p99_ms = models.FloatField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "kind", "name"], name="performance_daily_once")]

    def __str__(self) -> str:
        return f"{self.day} {self.kind} {self.name}"


class Watermark(models.Model):
    """How far a rollup has read (e.g. decisions resolved up to ``at``)."""

    name = models.CharField(max_length=40, unique=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} @ {self.at}"


class Severity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertRule(models.Model):
    """When to alert: a metric of ``analytics.metrics`` against a threshold. The seed's thresholds
    are ``builtin`` rows every tenant gets (created on first use; tunable and disabled, never
    deleted); a tenant adds its own on any metric of the catalogue."""

    class Comparator(models.TextChoices):
        ABOVE = "above"
        BELOW = "below"

    name = models.SlugField(max_length=40, unique=True)
    label = models.CharField(max_length=120)
    metric = models.CharField(max_length=40)  # a name in analytics.metrics.METRICS
    comparator = models.CharField(max_length=5, choices=Comparator.choices)
    threshold = models.FloatField()
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.WARNING)
    cooldown_minutes = models.PositiveIntegerField(default=15)
    escalate_after_minutes = models.PositiveIntegerField(null=True, blank=True)  # None: never
    enabled = models.BooleanField(default=True)
    builtin = models.BooleanField(default=False)
    created_by = models.CharField(max_length=254)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-builtin", "name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.metric} {self.comparator} {self.threshold:g}"

    def crossed(self, value: float) -> bool:
        return value < self.threshold if self.comparator == self.Comparator.BELOW else value > self.threshold


class Alert(models.Model):
    """A rule crossed (``analytics.alerts``): one row per alert, firing until the metric is back
    within bounds (then resolved). Deduplicated: while a rule fires, its row is updated. A rule that
    crosses again within its cool-down reopens the same row (``reopen_count``); ``fired_at`` is when
    the current firing period began, ``announced`` whether it was announced (alert.fired)."""

    class State(models.TextChoices):
        FIRING = "firing"
        RESOLVED = "resolved"

    rule = models.CharField(max_length=40)
    label = models.CharField(max_length=120, blank=True)
    metric = models.CharField(max_length=40, blank=True)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.WARNING)
    state = models.CharField(max_length=8, choices=State.choices, default=State.FIRING)
    value = models.FloatField()
    threshold = models.FloatField()
    message = models.CharField(max_length=300)
    started_at = models.DateTimeField(auto_now_add=True)
    fired_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    reopen_count = models.PositiveIntegerField(default=0)
    announced = models.BooleanField(default=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=254, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["rule", "-id"], name="alert_rule_latest")]
        constraints = [
            models.UniqueConstraint(fields=["rule"], condition=models.Q(state="firing"), name="alert_one_firing")
        ]

    def __str__(self) -> str:
        return f"{self.rule} {self.state}"
