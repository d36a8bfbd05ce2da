"""AI-core data of one tenant: detected anomalies, posted fundamentals, batch jobs."""

from django.db import models


class Anomaly(models.Model):
    """One unusual observation: a bar's return or volume, or a decision stream's rate or
    confidence, with its robust z-score (or IsolationForest score). Detection is idempotent: one
    row per (kind, symbol, timeframe, ts)."""

    class Kind(models.TextChoices):
        BAR_RETURN = "bar_return"
        BAR_VOLUME = "bar_volume"
        BAR_ISOLATION = "bar_isolation"
        DECISION_RATE = "decision_rate"
        CONFIDENCE_SHIFT = "confidence_shift"
        USAGE_RATE = "usage_rate"  # API requests per bucket
        USAGE_ERRORS = "usage_errors"  # share of requests answered 4xx/5xx per bucket

    kind = models.CharField(max_length=20, choices=Kind.choices)
    symbol = models.CharField(max_length=32)
    timeframe = models.CharField(max_length=4)
    ts = models.DateTimeField()
    value = models.FloatField()
    score = models.FloatField()  # robust z (signed) or IsolationForest anomaly score
    method = models.CharField(max_length=24)
    detail = models.JSONField(default=dict, blank=True)
    detected_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ts", "-id"]
        constraints = [models.UniqueConstraint(fields=["kind", "symbol", "timeframe", "ts"], name="anomaly_once")]
        indexes = [models.Index(fields=["symbol", "-ts"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.symbol} {self.ts:%Y-%m-%d %H:%M} z={self.score:.1f}"


class Fundamentals(models.Model):
    """Posted fundamentals of one instrument (latest per symbol kept; each post replaces it)."""

    symbol = models.CharField(max_length=32, unique=True)
    sector = models.CharField(max_length=64, blank=True)
    shares_outstanding = models.FloatField()
    earnings = models.FloatField(help_text="trailing twelve-month net earnings (currency units)")
    book_value = models.FloatField(help_text="shareholders' equity (currency units)")
    dividends = models.FloatField(default=0.0, help_text="trailing twelve-month dividends paid")
    as_of = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        verbose_name_plural = "fundamentals"

    def __str__(self) -> str:
        return f"{self.symbol} ({self.sector or 'no sector'})"


class BatchJob(models.Model):
    """One analysis (risk, anomaly, forecast or valuation) run over many instruments on Celery:
    progress in ``percent``, one result (or error code) per symbol in ``results``."""

    class Analysis(models.TextChoices):
        RISK = "risk"
        ANOMALY = "anomaly"
        FORECAST = "forecast"
        VALUATION = "valuation"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    analysis = models.CharField(max_length=12, choices=Analysis.choices)
    symbols = models.JSONField(default=list)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    percent = models.FloatField(default=0.0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    results = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"batch {self.pk} {self.analysis} ({len(self.symbols)} symbols, {self.status})"
