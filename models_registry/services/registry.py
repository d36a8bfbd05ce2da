"""Registry writes: versions (written once, by the job that trained them), aliases and their
history, deploy (gated), rollback, traffic split, circuit state, retention.

Artifacts are sealed here: the archive's sha256 is recorded and the bytes are encrypted with the
tenant's data key (``compliance.vault``, AES-256-GCM, bound to the version by its AAD context).
``serving.bundle_get`` opens them and refuses any whose hash does not match.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from api.errors import ApplicationError
from compliance import vault
from compliance.services import actor_display, audit_record
from features.services import feature_set_lock

from ..models import AliasEvent, CircuitState, ModelAlias, ModelVersion, RegisteredModel, VersionStatus

PRODUCTION = "production"
CHALLENGER = "challenger"
GATES = ("edge", "thresholds", "none")


def _serving_changed() -> None:
    """Who serves may have changed: this process's serving caches reload now (others within their
    TTL), and again after the transaction commits (a reader between would cache the old rows)."""
    from .. import serving

    serving.serving_changed()
    transaction.on_commit(serving.serving_changed)


def artifact_context(model_name: str, version: int) -> bytes:
    return f"model:{model_name}@{version}".encode()


def model_get_or_create(*, name: str, actor=None, tenant=None) -> RegisteredModel:
    model = RegisteredModel.objects.filter(name=name).first()
    if model is not None:
        return model
    if tenant is not None:
        from tenants import limits

        limits.count_check(tenant, "models", RegisteredModel.objects.count())
    model, _ = RegisteredModel.objects.get_or_create(name=name, defaults={"created_by": actor_display(actor)})
    return model


def version_from_bundle(
    *,
    model_name: str,
    bundle,
    feature_set,
    symbol: str,
    timeframe: str,
    report: dict,
    params: dict,
    rows_used: int,
    no_edge: bool = False,
    actor=None,
) -> ModelVersion:
    """A version from a bundle fitted in this process, outside a search (fixtures, benches, the
    system's own samples; never a user's upload): recorded under its own finished training job,
    then sealed like any other version."""
    from ..ml import artifacts
    from ..models import TrainingJob

    model, _ = RegisteredModel.objects.get_or_create(name=model_name)
    job = TrainingJob.objects.create(model_name=model_name, params={}, state="succeeded")
    artifact = artifacts.dump(bundle)
    return version_create(
        model=model,
        training_job=job,
        artifact=artifact,
        task=bundle.task,
        target={"kind": "direction", "horizon": 1},
        feature_set=feature_set,
        feature_names=list(bundle.feature_names),
        symbol=symbol,
        timeframe=timeframe,
        train_start=None,
        train_end=None,
        rows_used=rows_used,
        data_fingerprint=hashlib.sha256(artifact).hexdigest(),
        params=params,
        report=report,
        reference={},
        no_edge=no_edge,
        actor=actor,
    )


def version_create(
    *,
    model: RegisteredModel,
    training_job,
    artifact: bytes,
    task: str,
    target: dict,
    feature_set,
    feature_names: list[str],
    symbol: str,
    timeframe: str,
    train_start,
    train_end,
    rows_used: int,
    data_fingerprint: str,
    params: dict,
    report: dict,
    reference: dict,
    no_edge: bool,
    actor=None,
) -> ModelVersion:
    """Store the next version, READY, with its sealed artifact; lock the feature-set version it uses.
    A job can make one version only: a second call for the same job returns the first."""
    existing = ModelVersion.objects.filter(training_job=training_job).first() if training_job else None
    if existing is not None:
        return existing
    for _ in range(3):
        try:
            with transaction.atomic():
                RegisteredModel.objects.select_for_update().get(pk=model.pk)  # serialise version numbers
                last = ModelVersion.objects.filter(model=model).order_by("-version").first()
                number = (last.version + 1) if last else 1
                version = ModelVersion.objects.create(
                    model=model,
                    version=number,
                    status=VersionStatus.READY,
                    training_job=training_job,
                    artifact=vault.encrypt(artifact, artifact_context(model.name, number)),
                    artifact_sha256=hashlib.sha256(artifact).hexdigest(),
                    artifact_bytes=len(artifact),
                    task=task,
                    target=target,
                    feature_set=feature_set,
                    feature_names=feature_names,
                    symbol=symbol,
                    timeframe=timeframe,
                    train_start=train_start,
                    train_end=train_end,
                    rows_used=rows_used,
                    data_fingerprint=data_fingerprint,
                    code_version=f"{settings.VERSION}+{settings.GIT_SHA}"[:64],
                    params=params,
                    report=report,
                    reference=reference,
                    no_edge=no_edge,
                    created_by=actor_display(actor),
                )
                feature_set_lock(feature_set=feature_set, actor=actor)
                audit_record(
                    actor,
                    "model.version_created",
                    version,
                    {"ref": version.ref, "sha256": version.artifact_sha256, "no_edge": no_edge},
                )
            break
        except IntegrityError:
            existing = ModelVersion.objects.filter(training_job=training_job).first() if training_job else None
            if existing is not None:
                return existing
    else:
        raise ApplicationError("conflict", "Another version was being stored at the same time; retry.", status=409)
    versions_prune(model=model)
    return version


def versions_prune(*, model: RegisteredModel) -> int:
    """Keep the newest ``MODEL_VERSION_LIMIT`` artifacts; an aliased version is never pruned. The
    version row (metrics, lineage) stays: only its artifact goes."""
    limit = int(settings.MODEL_VERSION_LIMIT)
    aliased = set(ModelAlias.objects.filter(model=model).values_list("version_id", flat=True))
    keep = set(ModelVersion.objects.filter(model=model).order_by("-version").values_list("pk", flat=True)[:limit])
    doomed = ModelVersion.objects.filter(model=model, pruned_at__isnull=True, artifact__isnull=False).exclude(
        pk__in=keep | aliased
    )
    refs = [v.ref for v in doomed]
    pruned = doomed.update(artifact=None, pruned_at=timezone.now())
    if pruned:
        audit_record("system", "model.versions_pruned", model, {"versions": refs, "limit": limit})
    return pruned


def _gate_check(model: RegisteredModel, version: ModelVersion) -> None:
    policy = {"gate": "edge", **(model.deploy_policy or {})}
    if version.status != VersionStatus.READY or version.artifact is None:
        raise ApplicationError(
            "version_not_deployable",
            f"{version.ref} is {version.status}{' and pruned' if version.pruned_at else ''}; deploy a ready version.",
            status=409,
        )
    gate = policy["gate"]
    if gate == "edge" and version.no_edge:
        significance = (version.report or {}).get("significance", {})
        raise ApplicationError(
            "deploy_gate_failed",
            f"{version.ref} does not beat its naive baselines significantly on purged out-of-sample data, net "
            "of costs (no_edge). Train with more data or another target, or change the model's deploy policy.",
            {"gate": "edge", "significance": significance},
            status=409,
        )
    if gate == "thresholds":
        accuracy = ((version.report or {}).get("oos") or {}).get("accuracy")
        need = float(policy.get("min_accuracy", 0.8))
        if accuracy is None or accuracy < need:
            raise ApplicationError(
                "deploy_gate_failed",
                f"{version.ref} has out-of-sample accuracy {accuracy}, below this model's deploy threshold {need}.",
                {"gate": "thresholds", "accuracy": accuracy, "min_accuracy": need},
                status=409,
            )


def alias_set(
    *, model: RegisteredModel, alias: str, version: ModelVersion, actor=None, reason: str = "", action: str = "assign"
) -> ModelAlias:
    if version.model_id != model.pk:
        raise ApplicationError("invalid_version", "That version belongs to another model.")
    with transaction.atomic():
        current = ModelAlias.objects.select_for_update().filter(model=model, name=alias).first()
        before = current.version.version if current else None
        if current is None:
            current = ModelAlias.objects.create(model=model, name=alias, version=version)
        else:
            current.version = version
            current.save(update_fields=["version", "updated_at"])
        AliasEvent.objects.create(
            model=model,
            alias=alias,
            from_version=before,
            to_version=version.version,
            action=action,
            reason=reason[:500],
            actor=actor_display(actor),
        )
        audit_record(
            actor,
            f"model.{action}",
            model,
            {"alias": alias, "from": before, "to": version.version, "reason": reason[:500]},
        )
        if alias == PRODUCTION and action in ("deploy", "rollback"):
            from notifications.services import emit

            emit(
                "model.deployed" if action == "deploy" else "model.rolled_back",
                {"name": model.name, "version": version.version, "from_version": before, "alias": alias,
                 "reason": reason[:300], "by": actor_display(actor)},
            )  # fmt: skip
    _serving_changed()
    return current


def model_deploy(
    *, model: RegisteredModel, version: ModelVersion, alias: str = PRODUCTION, reason: str = "", actor=None
) -> ModelAlias:
    """Point ``alias`` at ``version``. ``production`` is gated by the model's deploy policy
    (default: the version must beat its baselines significantly, net of costs)."""
    if alias == PRODUCTION:
        _gate_check(model, version)
    elif version.status != VersionStatus.READY or version.artifact is None:
        _gate_check(model.__class__(deploy_policy={"gate": "none"}), version)
    return alias_set(model=model, alias=alias, version=version, actor=actor, reason=reason, action="deploy")


def model_rollback(
    *, model: RegisteredModel, version: ModelVersion | None = None, reason: str = "", actor=None
) -> ModelAlias:
    """Move ``production`` back: to ``version``, or to the version it pointed at before the last
    move. Rolling back is not gated (it restores something that was already trusted)."""
    current = ModelAlias.objects.filter(model=model, name=PRODUCTION).select_related("version").first()
    if version is None:
        event = (
            AliasEvent.objects.filter(model=model, alias=PRODUCTION, from_version__isnull=False)
            .exclude(from_version=current.version.version if current else None)
            .first()
        )
        if current is None or event is None:
            raise ApplicationError(
                "nothing_to_roll_back", f"{model.name} has no earlier production version; name the version to use."
            )
        version = ModelVersion.objects.get(model=model, version=event.from_version)
    if version.artifact is None:
        raise ApplicationError("version_not_deployable", f"{version.ref} was pruned; pick a kept version.", status=409)
    return alias_set(model=model, alias=PRODUCTION, version=version, actor=actor, reason=reason, action="rollback")


def alias_remove(*, model: RegisteredModel, alias: str, actor=None, reason: str = "") -> None:
    with transaction.atomic():
        current = ModelAlias.objects.select_for_update().filter(model=model, name=alias).first()
        if current is None:
            raise ApplicationError("alias_not_found", f"{model.name} has no alias '{alias}'.", status=404)
        AliasEvent.objects.create(
            model=model,
            alias=alias,
            from_version=current.version.version,
            to_version=None,
            action="remove",
            reason=reason[:500],
            actor=actor_display(actor),
        )
        current.delete()
        audit_record(actor, "model.alias_removed", model, {"alias": alias, "reason": reason[:500]})
    _serving_changed()


def model_settings_update(
    *,
    model: RegisteredModel,
    actor=None,
    deploy_policy: dict | None = None,
    traffic: dict | None = None,
    retrain_every_days: int | None | bool = False,
    retrain_on_drift: bool | None = None,
    description: str | None = None,
) -> RegisteredModel:
    changed = {}
    if retrain_on_drift is not None:
        model.retrain_on_drift = bool(retrain_on_drift)
        changed["retrain_on_drift"] = model.retrain_on_drift
    if deploy_policy is not None:
        gate = deploy_policy.get("gate", "edge")
        if gate not in GATES:
            raise ApplicationError("invalid_policy", f"gate must be one of {', '.join(GATES)}.", {"gate": gate})
        accuracy = deploy_policy.get("min_accuracy")
        if accuracy is not None and (
            not isinstance(accuracy, int | float) or isinstance(accuracy, bool) or not 0 < float(accuracy) <= 1
        ):
            raise ApplicationError("invalid_policy", "min_accuracy is a fraction in (0, 1].")
        policy = {"gate": gate, **({"min_accuracy": float(accuracy)} if accuracy is not None else {})}
        # auto-rollback: live accuracy below rollback_min_accuracy over rollback_window calls
        floor = deploy_policy.get("rollback_min_accuracy")
        if floor is not None:
            if not isinstance(floor, int | float) or isinstance(floor, bool) or not 0 < float(floor) < 1:
                raise ApplicationError("invalid_policy", "rollback_min_accuracy is a fraction in (0, 1), or null.")
            policy["rollback_min_accuracy"] = float(floor)
        window = deploy_policy.get("rollback_window")
        if window is not None:
            if not isinstance(window, int) or isinstance(window, bool) or not 10 <= window <= 100_000:
                raise ApplicationError("invalid_policy", "rollback_window is a whole number of calls, 10-100000.")
            policy["rollback_window"] = window
        model.deploy_policy = policy
        changed["deploy_policy"] = model.deploy_policy
    if traffic is not None:
        pct = traffic.get("challenger_percent", 0)
        if not isinstance(pct, int | float) or not 0 <= pct <= 100:
            raise ApplicationError("invalid_traffic", "challenger_percent is a number from 0 to 100.")
        model.traffic = {"challenger_percent": pct}
        changed["traffic"] = model.traffic
    if retrain_every_days is not False:
        if retrain_every_days is not None and not 1 <= int(retrain_every_days) <= 365:
            raise ApplicationError("invalid_schedule", "retrain_every_days is 1-365, or null for no schedule.")
        model.retrain_every_days = retrain_every_days
        changed["retrain_every_days"] = retrain_every_days
    if description is not None:
        model.description = description[:500]
        changed["description"] = model.description
    if changed:
        with transaction.atomic():
            model.save()
            audit_record(actor, "model.settings_updated", model, changed)
        _serving_changed()
    return model


def circuit_set(*, version: ModelVersion, state: str, actor=None, reason: str = "", auto: bool = False) -> ModelVersion:
    """Open (stop serving; traffic falls back to production, decisions to the non-ML agents),
    half-open (serve again on probation) or close a version's breaker. ``auto``: the breaker itself
    moved it (an automatically opened circuit is half-opened again after a cool-down; one an
    operator opened stays open until an operator closes it)."""
    if state not in CircuitState.values:
        raise ApplicationError("invalid_state", f"state must be one of {', '.join(CircuitState.values)}.")
    with transaction.atomic():
        version.circuit = state
        version.circuit_changed_at = timezone.now()
        version.circuit_auto = auto
        version.circuit_reason = reason[:300]
        version.save(update_fields=["circuit", "circuit_changed_at", "circuit_auto", "circuit_reason"])
        audit_record(
            actor, "model.circuit", version, {"ref": version.ref, "state": state, "reason": reason[:500], "auto": auto}
        )
    _serving_changed()
    return version
