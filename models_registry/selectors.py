"""Registry reads: models, versions, aliases and their history, training jobs."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from api.errors import NotFound

from .models import AliasEvent, ModelAlert, ModelAlias, ModelVersion, RegisteredModel, TrainingJob


def model_list() -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.prefetch_related(
        Prefetch("aliases", queryset=ModelAlias.objects.select_related("version"))
    ).order_by("name")


def model_get(*, name: str) -> RegisteredModel:
    model = RegisteredModel.objects.filter(name=(name or "").lower()).first()
    if model is None:
        raise NotFound("model")
    return model


def version_list(*, model: RegisteredModel) -> QuerySet[ModelVersion]:
    return (
        ModelVersion.objects.filter(model=model)
        .select_related("feature_set", "model")
        .defer("artifact", "reference")
        .order_by("-version")
    )


def latest_versions(*, models) -> dict[int, ModelVersion]:
    """Each of ``models``' newest version by model id, in one query (a list page's "latest" column)."""
    rows = (
        ModelVersion.objects.filter(model__in=[m.pk for m in models])
        .only("id", "model_id", "version", "status", "no_edge", "created_at")
        .order_by("model_id", "-version")
        .distinct("model_id")
    )
    return {v.model_id: v for v in rows}


def version_get(*, model: RegisteredModel, version: int) -> ModelVersion:
    found = ModelVersion.objects.filter(model=model, version=version).select_related("feature_set", "model").first()
    if found is None:
        raise NotFound("model version")
    return found


def alias_map(*, model: RegisteredModel) -> dict[str, int]:
    return dict(ModelAlias.objects.filter(model=model).values_list("name", "version__version"))


def alias_history(*, model: RegisteredModel, limit: int | None = 100) -> QuerySet[AliasEvent]:
    """Newest first; ``limit=None``: all of them, a QuerySet to filter and page."""
    return AliasEvent.objects.filter(model=model)[:limit]


def alert_list(*, model: RegisteredModel | None = None, open_only: bool = False) -> QuerySet[ModelAlert]:
    qs = ModelAlert.objects.select_related("model", "version")
    if model is not None:
        qs = qs.filter(model=model)
    if open_only:
        qs = qs.filter(resolved_at__isnull=True)
    return qs


def job_list(*, model_name: str | None = None, state: str | None = None) -> QuerySet[TrainingJob]:
    qs = TrainingJob.objects.select_related("model_version").defer("log", "trials")
    if model_name:
        qs = qs.filter(model_name=model_name.lower())
    if state:
        qs = qs.filter(state=state)
    return qs.order_by("-created_at")


def job_get(*, job_id) -> TrainingJob:
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:
        raise NotFound("training job") from None
    job = TrainingJob.objects.select_related("model_version").filter(pk=key).first()
    if job is None:
        raise NotFound("training job")
    return job
