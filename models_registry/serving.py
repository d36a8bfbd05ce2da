"""Serving registered models: which version answers (alias, A/B and canary split, circuit breaker),
loading it (sha256-verified, then cached per process), and predicting one row or a batch.

Loaded bundles are cached per (schema, version, sha256) in a bounded LRU (``AI_MODEL_CACHE_SIZE``):
versions are immutable, so an entry is never stale; a pruned version can't be loaded again.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection

from api.errors import ApplicationError, NotFound
from compliance import vault
from features.cache import BoundedCache

from .models import CircuitState, ModelAlias, ModelVersion, RegisteredModel
from .services.registry import CHALLENGER, PRODUCTION, artifact_context

_bundles = BoundedCache(settings.AI_MODEL_CACHE_SIZE)


def artifact_verified(version: ModelVersion) -> bytes:
    """The plaintext artifact of a version, decrypted and checked against its recorded sha256."""
    if version.artifact is None:
        raise ApplicationError(
            "version_pruned", f"{version.ref} was pruned (retention limit); use a kept version.", status=409
        )
    data = vault.decrypt(version.artifact, artifact_context(version.model.name, version.version))
    if hashlib.sha256(data).hexdigest() != version.artifact_sha256:
        raise ApplicationError(
            "artifact_tampered", f"The artifact of {version.ref} does not match its recorded sha256.", status=500
        )
    return data


def policy_get(version: ModelVersion):
    """The RL policy of a version (``task == "rl"``): verified like a bundle, loaded without pickle."""
    key = (connection.schema_name, version.pk, version.artifact_sha256, "rl")
    policy = _bundles.get(key)
    if policy is None:
        from .rl import artifact as rl_artifact

        policy = rl_artifact.load(artifact_verified(version))
        _bundles.put(key, policy)
    return policy


def bundle_get(version: ModelVersion):
    """The fitted bundle of a version: decrypted, verified against its sha256, then loaded."""
    key = (connection.schema_name, version.pk, version.artifact_sha256)
    bundle = _bundles.get(key)
    if bundle is not None:
        return bundle
    if version.task == "rl":
        raise ApplicationError(
            "not_a_predictor", f"{version.ref} is an RL policy: it votes as the rl agent, it does not predict."
        )
    data = artifact_verified(version)
    from .ml import artifacts  # xgboost/skops load only in processes that predict

    bundle = artifacts.load(data)
    bundle.predict_one(np.zeros(len(bundle.feature_names)))  # warm: the first live request pays nothing extra
    _bundles.put(key, bundle)
    return bundle


def bundle_cache_stats() -> dict:
    return _bundles.stats()


def _bucket(request_key: str) -> float:
    """A stable number in [0, 100) per request key: the same key always takes the same arm."""
    digest = hashlib.blake2b(request_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


@dataclass(frozen=True)
class Arms:
    """Who answers for a model's ``production`` requests: the production version and, with a
    traffic split, the challenger and its share (percent)."""

    production: ModelVersion | None
    challenger: ModelVersion | None = None
    challenger_percent: float = 0.0

    def pick(self, request_key: str | None) -> ModelVersion | None:
        """The version for this request: the challenger when the key falls in its share and its
        circuit is not open; else production unless its circuit is open (then None)."""
        c = self.challenger
        if (
            c is not None
            and request_key
            and self.challenger_percent
            and c.circuit != CircuitState.OPEN
            and _bucket(request_key) < self.challenger_percent
        ):
            return c
        p = self.production
        return None if p is None or p.circuit == CircuitState.OPEN else p

    @property
    def versions(self) -> list[ModelVersion]:
        return [v for v in (self.production, self.challenger if self.challenger_percent else None) if v is not None]


# Bumped by every registry write that changes who serves (alias moves, circuit and traffic
# changes) in this process; per-process serving caches compare it (other processes: their TTL).
generation = 0


def serving_changed() -> None:
    global generation
    generation += 1


def _aliases(model: RegisteredModel) -> dict[str, ModelVersion]:
    """Alias name -> version, loaded without the artifact and the drift reference (a bundle is
    loaded from the artifact once per process, on a bundle-cache miss)."""
    return {
        a.name: a.version
        for a in ModelAlias.objects.filter(model=model)
        .select_related("version__model", "version__feature_set")
        .defer("version__artifact", "version__reference")
    }


def _arms(model: RegisteredModel, aliases: dict[str, ModelVersion]) -> Arms:
    return Arms(
        production=aliases.get(PRODUCTION),
        challenger=aliases.get(CHALLENGER),
        challenger_percent=float((model.traffic or {}).get("challenger_percent") or 0),
    )


def arms_get(model: RegisteredModel) -> Arms:
    return _arms(model, _aliases(model))


def version_resolve(
    *, model: RegisteredModel, alias: str | None = None, version: int | None = None, request_key: str | None = None
) -> ModelVersion:
    """An explicit version; or an alias (default ``production``). With a traffic split, a
    ``production`` request whose key falls in the challenger's share goes to the challenger; a
    challenger whose circuit is open gets no traffic."""
    if version is not None:
        found = ModelVersion.objects.filter(model=model, version=version).select_related("model").first()
        if found is None:
            raise NotFound("model version")
        return found
    alias = alias or PRODUCTION
    aliases = _aliases(model)
    chosen = aliases.get(alias)
    if chosen is None:
        raise ApplicationError(
            "alias_not_found",
            f"{model.name} has no '{alias}' version yet; deploy one first.",
            {"aliases": sorted(aliases)},
            status=404,
        )
    if alias == PRODUCTION and request_key:
        chosen = _arms(model, aliases).pick(request_key) or chosen
    return chosen


def predict(*, version: ModelVersion, rows: list[dict]) -> list[dict]:
    """One prediction per row of features (a dict naming every feature of the version)."""
    names = version.feature_names
    missing = sorted({n for row in rows for n in names if n not in row})
    if missing:
        raise ApplicationError(
            "missing_features",
            f"Each row needs every feature of {version.ref}: {', '.join(missing[:10])} missing.",
            {"missing": missing, "feature_names": names},
        )
    try:
        x = np.array([[row[n] for n in names] for row in rows], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ApplicationError("invalid_features", f"Feature values must be numbers: {exc}") from exc
    if not np.isfinite(x).all():
        raise ApplicationError(
            "invalid_features",
            "Feature values must be finite numbers (no null, NaN or infinity): warm-up rows can't be predicted.",
        )
    bundle = bundle_get(version)
    return _format(version, bundle, x)


def _format(version: ModelVersion, bundle, x: np.ndarray) -> list[dict]:
    if len(x) == 1:  # the live path: one row, no batch machinery (p99 well under 1 ms)
        one = bundle.predict_one(x[0])
        if version.task == "regression":
            return [{"prediction": one["prediction"], "version": version.ref}]
        probs = one["probabilities"]
        return [
            {
                "prediction": one["class"],
                "confidence": float(probs[one["class"]]),
                "probabilities": {k: float(p) for k, p in probs.items()},
                "version": version.ref,
            }
        ]
    if version.task == "regression":
        return [{"prediction": float(v), "version": version.ref} for v in bundle.predict(x)]
    names = bundle.classes
    out = []
    for p in bundle.predict_proba(x):
        k = int(np.argmax(p))
        out.append(
            {
                "prediction": names[k],
                "confidence": float(p[k]),
                "probabilities": {names[i]: float(p[i]) for i in range(len(names))},
                "version": version.ref,
            }
        )
    return out


def predict_latest(*, version: ModelVersion, symbol: str | None = None) -> dict:
    """The prediction for the latest closed bar of the version's instrument and timeframe."""
    from features import selectors as fs_selectors
    from marketdata import selectors as md_selectors

    instrument = md_selectors.instrument_get(symbol=symbol or version.symbol)
    feats = fs_selectors.stored_features(instrument=instrument, timeframe=version.timeframe, fs=version.feature_set)
    if feats.empty:
        raise ApplicationError("no_bars", f"{instrument.symbol} has no {version.timeframe} bars.")
    last = feats.iloc[-1]
    row = {n: float(last[n]) for n in version.feature_names}
    if any(math.isnan(v) for v in row.values()):
        raise ApplicationError("warming_up", f"{instrument.symbol} has too few bars for the features of {version.ref}.")
    result = predict(version=version, rows=[row])[0]
    return {**result, "symbol": instrument.symbol, "ts": feats.index[-1].isoformat()}
