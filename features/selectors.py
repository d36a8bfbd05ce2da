"""Reads for feature sets: ``name@version`` or ``name`` (its latest version) everywhere."""

from __future__ import annotations

from django.db.models import QuerySet

from api.errors import ApplicationError, NotFound

from .models import FeatureSet
from .spec import FeatureSpec


def feature_set_list(*, latest_only: bool = False) -> QuerySet[FeatureSet]:
    qs = FeatureSet.objects.order_by("name", "-version")
    if latest_only:
        qs = qs.distinct("name")
    return qs


def feature_set_get(*, ref: str) -> FeatureSet:
    """``default@1`` is that version; ``default`` is the latest version of ``default``."""
    name, sep, version = (ref or "").strip().partition("@")
    qs = FeatureSet.objects.filter(name=name.lower())
    if sep:
        if not version.isdigit():
            raise ApplicationError("invalid_ref", "A feature-set reference is name or name@version, e.g. default@1.")
        fs = qs.filter(version=int(version)).first()
    else:
        fs = qs.order_by("-version").first()
    if fs is None:
        raise NotFound("feature set", {"ref": ref})
    return fs


def feature_set_spec(fs: FeatureSet) -> FeatureSpec:
    return FeatureSpec.from_json(fs.spec)


def feature_set_diff(*, a: FeatureSet, b: FeatureSet) -> dict:
    """What changed between two versions: features added/removed/changed (by position-free key) and
    the output columns added/removed."""

    def keyed(spec: dict) -> dict[str, dict]:
        out = {}
        for f in spec.get("features", []):
            key = f"{f['indicator']}@{f.get('timeframe') or 'base'}#{sorted((f.get('params') or {}).items())}"
            out[key] = f
        return out

    ka, kb = keyed(a.spec), keyed(b.spec)
    return {
        "from": a.ref,
        "to": b.ref,
        "features_added": [kb[k] for k in kb if k not in ka],
        "features_removed": [ka[k] for k in ka if k not in kb],
        "features_changed": [{"from": ka[k], "to": kb[k]} for k in ka if k in kb and ka[k] != kb[k]],
        "columns_added": [c for c in b.columns if c not in a.columns],
        "columns_removed": [c for c in a.columns if c not in b.columns],
        "warmup": {"from": a.warmup, "to": b.warmup},
    }
