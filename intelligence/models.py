"""Decisions of one tenant (tenant schema): the flow that configures the pipeline, every decision
with its explanation and later its outcome, the consensus engine's learned state, and the paper
ledger (positions and fills) the risk agent reads."""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models

from compliance.models import ChainBatch


class Flow(models.Model):
    """A versioned configuration of the decision pipeline: agents, their settings and initial
    weights, thresholds, model alias, risk limits. A version never changes; one is active."""

    name = models.SlugField(max_length=64)
    version = models.PositiveIntegerField()
    config = models.JSONField()
    active = models.BooleanField(default=False)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="flow_version_unique"),
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="one_active_flow"),
        ]

    def __str__(self) -> str:
        return self.ref

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class Action(models.TextChoices):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


class Decision(models.Model):
    """One decision. ``id`` is the tenant's increasing decision number (REST and WebSocket alike).
    Written in batches by the stream; outcome fields are filled when the horizon has passed."""

    class Source(models.TextChoices):
        STREAM = "stream"
        API = "api"

    id = models.BigAutoField(primary_key=True)
    source = models.CharField(max_length=8, choices=Source.choices)
    symbol = models.CharField(max_length=32)
    timeframe = models.CharField(max_length=4)
    ts = models.DateTimeField()  # the bar's open time; decided at its close
    action = models.CharField(max_length=4, choices=Action.choices)
    confidence = models.FloatField()
    raw_score = models.FloatField(default=0.0)
    size = models.FloatField(default=0.0)
    votes = models.JSONField(default=list)
    weights = models.JSONField(default=dict)
    explanation = models.TextField(blank=True)
    conservative = models.BooleanField(default=False)
    vetoed_by = models.CharField(max_length=32, blank=True)
    flow = models.CharField(max_length=80, blank=True)  # name@version
    model_version = models.CharField(max_length=80, blank=True)
    features = models.JSONField(default=dict)
    # what else the decision read that stored bars cannot give back (stream decisions): the paper
    # position the risk agent saw, the model's prediction and its own features, agents that failed
    inputs = models.JSONField(default=dict, blank=True)
    inputs_fingerprint = models.CharField(max_length=64, blank=True)
    latency_ms = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)
    # outcome
    horizon = models.PositiveSmallIntegerField(default=1)
    realized = models.SmallIntegerField(null=True, blank=True)  # +1 up, -1 down, 0 flat
    correct = models.BooleanField(null=True, blank=True)
    # the served model's own direction (P(up) vs 0.5, or the predicted return's sign) against the
    # outcome: the model's live accuracy, per version, for A/B metrics and auto-rollback
    model_correct = models.BooleanField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            BrinIndex(fields=["created_at"], name="decision_created_brin"),
            BrinIndex(fields=["ts"], name="decision_ts_brin"),  # performance rollups read whole days
            BrinIndex(fields=["resolved_at"], name="decision_resolved_brin"),
            models.Index(fields=["symbol", "-id"], name="decision_symbol_id"),
            models.Index(
                fields=["symbol", "timeframe", "ts"], name="decision_unresolved", condition=models.Q(resolved_at=None)
            ),
            models.Index(
                fields=["model_version", "-id"],
                name="decision_model_outcome",
                condition=models.Q(model_correct__isnull=False),
            ),
        ]
        constraints = [
            # the stream decides each bar once, whatever redelivery happens
            models.UniqueConstraint(
                fields=["symbol", "timeframe", "ts"], condition=models.Q(source="stream"), name="stream_bar_once"
            )
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.symbol} {self.action}"


class EngineState(models.Model):
    """The consensus engine's learned state per flow name (weights, calibration, accuracy window)."""

    flow = models.CharField(max_length=64, unique=True)
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"engine state of {self.flow}"


class EngineCheckpoint(models.Model):
    """The stream's consensus engine as it stood after decision ``after_id`` (written when a stream
    process loads its pipeline and every few minutes): where a replay of a recorded period starts.
    ``pending`` holds the decisions still waiting for their outcome, with the engine's exact view of
    each (what it will learn from); ``series`` the (symbol, timeframe) the process had open."""

    flow = models.CharField(max_length=64)
    flow_ref = models.CharField(max_length=80)
    flow_config = models.JSONField()  # the flow the process ran (resolved; the plan's agents only)
    partition = models.CharField(max_length=16, default="0of1")
    reason = models.CharField(max_length=16)  # "start" | "periodic"
    after_id = models.BigIntegerField()
    state = models.JSONField()
    pending = models.JSONField(default=list)
    series = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-after_id", "-id"]
        indexes = [models.Index(fields=["partition", "after_id"], name="checkpoint_partition_after")]

    def __str__(self) -> str:
        return f"{self.flow_ref} after #{self.after_id} ({self.reason})"


class WeightSnapshot(models.Model):
    """Agent weights per instrument over time (kept for the weights-over-time chart)."""

    flow = models.CharField(max_length=64)
    symbol = models.CharField(max_length=32)
    weights = models.JSONField()
    accuracy = models.FloatField(null=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["flow", "symbol", "-at"], name="weights_flow_symbol_at")]

    def __str__(self) -> str:
        return f"{self.flow} {self.symbol} {self.at:%Y-%m-%d %H:%M}"


class Position(models.Model):
    """The paper position in one instrument (signed quantity: > 0 long, < 0 short)."""

    symbol = models.CharField(max_length=32, unique=True)
    qty = models.FloatField(default=0.0)
    avg_price = models.FloatField(default=0.0)
    realized_pnl = models.FloatField(default=0.0)
    fees = models.FloatField(default=0.0)
    last_price = models.FloatField(default=0.0)
    peak_equity = models.FloatField(default=0.0)
    opened_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.symbol} {self.qty:+g}"

    @property
    def unrealized_pnl(self) -> float:
        return (self.last_price - self.avg_price) * self.qty if self.qty else 0.0


class Fill(models.Model):
    """A paper fill from an actionable decision."""

    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="fills")
    symbol = models.CharField(max_length=32)
    qty = models.FloatField()  # signed
    price = models.FloatField()
    fee = models.FloatField(default=0.0)
    realized_pnl = models.FloatField(default=0.0)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["decision"], name="one_fill_per_decision")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.qty:+g} @ {self.price:g}"


class LedgerDay(models.Model):
    """The paper ledger's P&L per UTC day, for the halting controls: where the day opened (the
    previous day's last figure), the highest P&L so far (carried across days: the drawdown's
    peak) and the last one seen."""

    day = models.DateField(unique=True)
    open_pnl = models.FloatField(default=0.0)
    peak_pnl = models.FloatField(default=0.0)
    last_pnl = models.FloatField(default=0.0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"{self.day} P&L {self.last_pnl:+.2f}"


class DecisionSeal(ChainBatch):
    """Decisions sealed into the tenant's hash chain (``compliance.chain``, as the audit trail):
    digests of what was decided, not of the outcome learned later. Verified by ``verify_audit``."""

    class Meta(ChainBatch.Meta):
        pass

    def __str__(self) -> str:
        return f"decision seal #{self.first_id}-{self.last_id} {self.hash[:12]}"
