"""Workflows of one tenant (tenant schema): "train → validate → backtest → compare → deploy →
approval → promote" as rows, one per step, so every step's state, progress, attempts and result
is visible while it runs and after it ends.

The rows are the source of truth; Celery only carries "run step X of workflow W now" (see
services.py for why this is a chain of tasks rather than one static ``celery.chain``)."""

from __future__ import annotations

import uuid

from django.db import models


class Kind(models.TextChoices):
    TRAIN_DEPLOY = "train_deploy"


class WorkflowState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


WORKFLOW_FINISHED = (WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELLED)
WORKFLOW_ACTIVE = (WorkflowState.QUEUED, WorkflowState.RUNNING, WorkflowState.AWAITING_APPROVAL)


class StepState(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    AWAITING_APPROVAL = "awaiting_approval"
    CANCELLED = "cancelled"


STEP_DONE = (StepState.SUCCEEDED, StepState.SKIPPED)


class Workflow(models.Model):
    """One run of a workflow. ``params`` is the validated request (what to train, how to judge and
    deploy it); ``version`` is the model version the train step produced."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TRAIN_DEPLOY)
    model_name = models.CharField(max_length=64)
    params = models.JSONField()
    state = models.CharField(max_length=20, choices=WorkflowState.choices, default=WorkflowState.QUEUED)
    current_step = models.CharField(max_length=20, blank=True)
    version = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "-created_at"]), models.Index(fields=["model_name", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.model_name} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in WORKFLOW_FINISHED


class WorkflowStep(models.Model):
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=20)
    state = models.CharField(max_length=20, choices=StepState.choices, default=StepState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    percent = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=300, blank=True)
    result = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=60, blank=True)
    actor = models.CharField(max_length=254, blank=True)  # who approved or rejected (the approval step)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["workflow", "position"]
        constraints = [models.UniqueConstraint(fields=["workflow", "name"], name="workflow_step_once")]
        indexes = [models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"
