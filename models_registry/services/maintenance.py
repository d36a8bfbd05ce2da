"""The registry's periodic work for one tenant: re-queue jobs whose worker died, start scheduled
retrains, check drift of production versions (at most once a day each), half-open the circuits
the breaker opened once their cool-down is over, and roll back production versions that fail live."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from api.errors import ApplicationError

from ..models import JobState, ModelAlert, ModelAlias, RegisteredModel, TrainingJob
from .training import model_retrain, training_jobs_reap


def registry_sweep_run(now: dt.datetime | None = None) -> dict:
    from tenants.selectors import tenant_current

    from ..drift import drift_check

    now = now or timezone.now()
    tenant = tenant_current()
    reaped = training_jobs_reap()
    retrained, checked = [], []
    for model in RegisteredModel.objects.filter(retrain_every_days__isnull=False):
        due = model.last_retrain_at is None or now - model.last_retrain_at >= dt.timedelta(
            days=model.retrain_every_days
        )
        busy = TrainingJob.objects.filter(model_name=model.name, state__in=[JobState.QUEUED, JobState.RUNNING]).exists()
        if due and not busy:
            try:
                model_retrain(tenant=tenant, model=model, actor="schedule", reason="scheduled")
                retrained.append(model.name)
            except ApplicationError as exc:
                ModelAlert.objects.create(
                    model=model, kind=ModelAlert.Kind.TRAINING_FAILED, message=f"Scheduled retrain: {exc.message}"[:500]
                )
    since = now - dt.timedelta(days=1)
    for alias in ModelAlias.objects.filter(name="production").select_related("version__model", "model"):
        recent = ModelAlert.objects.filter(version=alias.version, kind=ModelAlert.Kind.DRIFT, created_at__gte=since)
        checked_today = (alias.version.drift or {}).get("checked_at", "") >= since.isoformat()
        if not recent.exists() and not checked_today:
            try:
                result = drift_check(version=alias.version, record=True)
                checked.append(alias.version.ref)
            except ApplicationError:
                continue
            model = alias.model
            busy = TrainingJob.objects.filter(model_name=model.name, state__in=[JobState.QUEUED, JobState.RUNNING])
            if result["drifted"] and model.retrain_on_drift and not busy.exists():
                try:
                    model_retrain(tenant=tenant, model=model, actor="drift", reason=f"drift: PSI {result['max_psi']}")
                    retrained.append(model.name)
                except ApplicationError:
                    pass
    from intelligence.learning import models_live_check

    from ..breaker import half_open_due

    half_opened = half_open_due(now)
    rolled_back = models_live_check()
    return {
        "reaped": reaped,
        "retrained": retrained,
        "drift_checked": checked,
        "half_opened": half_opened,
        "live_checks": rolled_back,
    }
