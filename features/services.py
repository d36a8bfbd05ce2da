"""Writes for feature sets: a new spec for a name is a new version; versions never change."""

from __future__ import annotations

import re

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from api.errors import ApplicationError
from compliance.services import actor_display, audit_record

from . import cache
from .models import FeatureSet
from .spec import FeatureSpec

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def feature_set_create(
    *, name: str, spec: dict, description: str = "", base_timeframe: str = "", actor=None
) -> tuple[FeatureSet, bool]:
    """Validate the spec and store it as the next version of ``name``.

    The same spec as the latest version is not a new version: that version is returned with
    ``created=False`` (creating is idempotent, so retries never multiply versions)."""
    name = (name or "").strip().lower()
    if not NAME_RE.match(name):
        raise ApplicationError(
            "invalid_name",
            "A feature-set name is 1-64 lowercase letters, digits, _ or -, starting with a letter.",
            {"name": name},
        )
    parsed = FeatureSpec.from_json(spec)  # raises invalid_spec with every problem and its path
    parsed.validate(base_timeframe or None)
    if parsed.has_higher_timeframes() and not base_timeframe:
        raise ApplicationError(
            "invalid_spec",
            "This spec has features on their own timeframe: give the base_timeframe of the bars it runs on.",
            {"errors": [{"path": "base_timeframe", "message": "required with per-feature timeframes"}]},
        )
    digest = parsed.hash()
    for _ in range(3):  # two writers racing for the next version: the loser retries
        latest = FeatureSet.objects.filter(name=name).order_by("-version").first()
        if latest is not None and latest.spec_hash == digest and latest.base_timeframe == base_timeframe:
            return latest, False
        try:
            with transaction.atomic():
                fs = FeatureSet.objects.create(
                    name=name,
                    version=(latest.version + 1) if latest else 1,
                    description=description,
                    spec=parsed.to_json(),
                    spec_hash=digest,
                    columns=parsed.columns(),
                    warmup=parsed.warmup(base_timeframe or None),
                    base_timeframe=base_timeframe,
                    created_by=actor_display(actor),
                )
                audit_record(actor, "feature_set.created", fs, {"ref": fs.ref, "hash": digest})
            _references_changed()
            return fs, True
        except IntegrityError:
            continue
    raise ApplicationError("conflict", "Another version was being created at the same time; retry.", status=409)


def feature_set_lock(*, feature_set: FeatureSet, actor=None) -> FeatureSet:
    """Called when a model first trains on this version: from then on it can't be deleted."""
    if feature_set.locked_at is None:
        with transaction.atomic():
            feature_set.locked_at = timezone.now()
            feature_set.save(update_fields=["locked_at"])
            audit_record(actor, "feature_set.locked", feature_set, {"ref": feature_set.ref})
    return feature_set


def feature_set_delete(*, feature_set: FeatureSet, actor=None) -> None:
    if feature_set.locked_at is not None:
        raise ApplicationError(
            "feature_set_locked",
            f"{feature_set.ref} is used by a model and is kept for reproducibility; create a new version instead.",
            {"ref": feature_set.ref},
            status=409,
        )
    if feature_set.name == "default" and feature_set.version == 1:
        raise ApplicationError("feature_set_builtin", "default@1 is built in and can't be deleted.", status=409)
    with transaction.atomic():
        ref = feature_set.ref
        feature_set.delete()
        audit_record(actor, "feature_set.deleted", None, {"ref": ref})
    _references_changed()


def _references_changed() -> None:
    """What ``name`` (or a deleted ``name@version``) resolves to changed: forget this schema's resolutions."""
    schema = connection.schema_name
    cache.refs.discard(lambda key: key[0] == schema)
