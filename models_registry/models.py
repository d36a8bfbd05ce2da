"""The model registry of one tenant (tenant schema): training jobs, registered models, their
immutable versions, movable aliases with history, and model alerts (drift).

A version is written once by the training job that produced it (``training_job`` is unique, so a
job re-run after a worker kill can never make a second version) and never changes afterwards,
except for its serving state (circuit breaker, latest drift check) and pruning of its artifact.
"""

from __future__ import annotations

import uuid

from django.db import models


class JobState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class TrainingJob(models.Model):
    """One AutoML run. ``params`` is the validated request; progress fields are updated while it
    runs (at most about once a second) and pushed to the tenant's WebSocket group."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model_name = models.CharField(max_length=64)
    params = models.JSONField()
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    state = models.CharField(max_length=12, choices=JobState.choices, default=JobState.QUEUED)
    percent = models.PositiveSmallIntegerField(default=0)
    trials_done = models.PositiveIntegerField(default=0)
    n_trials = models.PositiveIntegerField(default=0)
    best_score = models.FloatField(null=True, blank=True)
    eta_seconds = models.PositiveIntegerField(null=True, blank=True)
    message = models.CharField(max_length=200, blank=True)
    log = models.TextField(blank=True)  # the tail (last ~100 lines)
    trials = models.JSONField(default=list)  # [{number, family, score, state, duration_s}]
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)  # > 1: resumed after a worker was lost
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model_name", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.model_name} job {self.id}"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


class RegisteredModel(models.Model):
    """A named model of the tenant: what it predicts, from what, and how it is governed."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=500, blank=True)
    # the training recipe of the latest job; retraining reuses it
    recipe = models.JSONField(default=dict)
    # deploy gate: {"gate": "edge" (default) | "thresholds" | "none", "min_accuracy": 0.8, ...}
    deploy_policy = models.JSONField(default=dict)
    # A/B and canary: {"challenger_percent": 10}; routing is deterministic by request key
    traffic = models.JSONField(default=dict)
    retrain_every_days = models.PositiveSmallIntegerField(null=True, blank=True)
    retrain_on_drift = models.BooleanField(default=False)  # a drifted production version starts a retrain
    last_retrain_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class VersionStatus(models.TextChoices):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class CircuitState(models.TextChoices):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ModelVersion(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=VersionStatus.choices, default=VersionStatus.PENDING)
    training_job = models.OneToOneField(
        TrainingJob, on_delete=models.PROTECT, null=True, blank=True, related_name="model_version"
    )
    # AES-256-GCM with the tenant's key (compliance.vault); the sha256 is of the plaintext archive
    artifact = models.BinaryField(null=True, editable=False)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    artifact_bytes = models.PositiveIntegerField(default=0)
    pruned_at = models.DateTimeField(null=True, blank=True)
    task = models.CharField(max_length=12)  # binary / multiclass / regression
    target = models.JSONField()
    feature_set = models.ForeignKey("features.FeatureSet", on_delete=models.PROTECT, related_name="+")
    feature_names = models.JSONField(default=list)
    symbol = models.CharField(max_length=32)
    timeframe = models.CharField(max_length=4)
    train_start = models.DateTimeField(null=True)
    train_end = models.DateTimeField(null=True)
    rows_used = models.PositiveIntegerField(default=0)
    data_fingerprint = models.CharField(max_length=64, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    params = models.JSONField(default=dict)
    report = models.JSONField(default=dict)
    # per-feature reference distribution for drift (quantile bin edges and proportions)
    reference = models.JSONField(default=dict)
    no_edge = models.BooleanField(default=True)
    circuit = models.CharField(max_length=10, choices=CircuitState.choices, default=CircuitState.CLOSED)
    circuit_changed_at = models.DateTimeField(null=True, blank=True)
    circuit_auto = models.BooleanField(default=False)  # opened by the breaker (it may half-open it again)
    circuit_reason = models.CharField(max_length=300, blank=True)
    # the latest drift check (serving state, like the circuit): {"checked_at", "max_psi", "features": {...}}
    drift = models.JSONField(default=dict)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-version"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="model_version_unique")]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.version}"

    @property
    def ref(self) -> str:
        return f"{self.model.name}@{self.version}"


class ModelAlias(models.Model):
    """A movable name (``production``, ``challenger``, custom) pointing at one version."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.SlugField(max_length=32)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="model_alias_unique")]

    def __str__(self) -> str:
        return f"{self.model.name}:{self.name}"


class AliasEvent(models.Model):
    """Every move of an alias: who, when, why, from which version to which (None: removed)."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="alias_events")
    alias = models.SlugField(max_length=32)
    from_version = models.PositiveIntegerField(null=True)
    to_version = models.PositiveIntegerField(null=True)
    action = models.CharField(max_length=12)  # deploy / rollback / assign / remove / retrain
    reason = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=254, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.model.name}:{self.alias} {self.from_version} -> {self.to_version}"


class ModelAlert(models.Model):
    """A condition worth telling someone about (drift, …). The notifications area delivers these."""

    class Kind(models.TextChoices):
        DRIFT = "drift"
        TRAINING_FAILED = "training_failed"
        AUTO_ROLLBACK = "auto_rollback"
        CIRCUIT_OPEN = "circuit_open"

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="alerts")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, null=True, related_name="alerts")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    severity = models.CharField(max_length=8, default="warning")
    message = models.CharField(max_length=500)
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"
