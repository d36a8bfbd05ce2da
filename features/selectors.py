"""Reads for feature sets: ``name@version`` or ``name`` (its latest version) everywhere."""

from __future__ import annotations

import time

import pandas as pd
from django.db import connection
from django.db.models import QuerySet

from api.errors import ApplicationError, NotFound

from . import cache
from .engine import compute_batch
from .models import FeatureSet
from .spec import FeatureSpec

HISTORY_MAX = 200_000  # bars of one instrument and timeframe that features are computed over


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


def feature_set_resolve(*, ref: str) -> FeatureSet:
    """``feature_set_get`` for hot read paths (calculate-features, live inference): answered from a
    per-process cache for up to ``FEATURES_CACHE["REF_TTL"]`` seconds, so a request makes no query.
    Writes in this process clear it at once; in another process, ``name`` may still resolve to the
    previous latest version for that long (responses name the version they used)."""
    key = (connection.schema_name, (ref or "").strip().lower())
    now = time.monotonic()
    hit = cache.refs.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    fs = feature_set_get(ref=ref)
    cache.refs.put(key, (now + cache.REF_TTL, fs))
    return fs


def feature_set_spec(fs: FeatureSet) -> FeatureSpec:
    """The parsed spec (parsed once per process per spec hash)."""
    return cache.specs.get_or_compute(fs.spec_hash, lambda: FeatureSpec.from_json(fs.spec))


def stored_features(*, instrument, timeframe: str, fs: FeatureSet) -> pd.DataFrame:
    """Features of the stored bars of one instrument and timeframe: the most recent
    ``HISTORY_MAX`` bars, computed from the first of them (exponential indicators depend on every
    earlier bar, so this is what training and the live engine, which start there too, see). Cached
    per process until the instrument's bars change; the frame is shared: do not modify it."""
    from marketdata import selectors as md_selectors

    key = (connection.schema_name, instrument.pk, instrument.bars_version, timeframe, fs.spec_hash)

    def compute() -> pd.DataFrame:
        spec = feature_set_spec(fs)
        bars = md_selectors.bars_frame(instrument=instrument, timeframe=timeframe, limit=HISTORY_MAX)
        if bars.empty:
            spec.validate(timeframe)
            return pd.DataFrame(columns=spec.columns(), index=bars.index, dtype="float64")
        return compute_batch(bars, spec, timeframe, direct=True)

    return cache.stored_features.get_or_compute(key, compute)


def latest_features(*, instrument, timeframe: str, fs: FeatureSet) -> dict[str, float]:
    """The last row of :func:`stored_features` as ``{column: float}`` (NaN where undefined), or
    ``{}`` without bars; cached under the same key. Shared: do not modify."""
    key = (connection.schema_name, instrument.pk, instrument.bars_version, timeframe, fs.spec_hash)

    def compute() -> dict[str, float]:
        frame = stored_features(instrument=instrument, timeframe=timeframe, fs=fs)
        if frame.empty:
            return {}
        return dict(zip(frame.columns, map(float, frame.to_numpy()[-1]), strict=True))

    return cache.latest_features.get_or_compute(key, compute)


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
