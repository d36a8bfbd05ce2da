"""The model circuit breaker: repeated prediction errors open a version's circuit.

- ``MODEL_BREAKER_ERRORS`` consecutive errors of a version (in one process) open its circuit:
  serving skips it (a challenger's traffic returns to production) and decisions fall back to the
  non-ML agents. A ``circuit_open`` alert and an audit record say why.
- After ``MODEL_BREAKER_COOLDOWN_S`` the registry sweep half-opens a circuit the breaker opened
  (one an operator opened stays open). Half-open serves again on probation: the first success
  closes the circuit, the first error opens it again.

Counting is per process and costs nothing on the success path while a version has no errors
(one dict lookup); the state change itself is a database write, so every process sees it.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import CircuitState, ModelAlert, ModelVersion

log = logging.getLogger(__name__)

_errors: dict[tuple[str, int], int] = {}  # (schema, version pk) -> consecutive errors


def _threshold() -> int:
    return int(getattr(settings, "MODEL_BREAKER_ERRORS", 5))


def record_error(version: ModelVersion, exc: BaseException) -> bool:
    """Count an error of ``version``; open its circuit at the threshold (or at once when half-open).
    Returns True when this error opened the circuit."""
    from .services.registry import circuit_set

    key = (connection.schema_name, version.pk)
    count = _errors.get(key, 0) + 1
    _errors[key] = count
    kind = type(exc).__name__
    if version.circuit == CircuitState.OPEN:
        return False
    if version.circuit != CircuitState.HALF_OPEN and count < _threshold():
        log.warning("prediction error %d/%d on %s: %s", count, _threshold(), version.ref, kind)
        return False
    why = (
        f"a prediction failed while half-open ({kind})"
        if version.circuit == CircuitState.HALF_OPEN
        else f"{count} consecutive prediction errors ({kind})"
    )
    circuit_set(version=version, state=CircuitState.OPEN, actor="system", reason=f"breaker: {why}", auto=True)
    ModelAlert.objects.create(
        model=version.model,
        version=version,
        kind=ModelAlert.Kind.CIRCUIT_OPEN,
        severity="critical",
        message=(
            f"{version.ref} stopped serving: {why}. Decisions use the other agents meanwhile; the breaker "
            f"retries it after {cooldown_seconds()} s. Check the version (re-deploy or roll back) if it keeps failing."
        )[:500],
        details={"errors": count, "error": kind, "last_message": str(exc)[:200]},
    )
    _errors.pop(key, None)
    return True


def record_success(version: ModelVersion) -> None:
    """A good prediction: resets the count; closes a half-open circuit."""
    key = (connection.schema_name, version.pk)
    if _errors:
        _errors.pop(key, None)
    if version.circuit == CircuitState.HALF_OPEN:
        from .services.registry import circuit_set

        circuit_set(
            version=version, state=CircuitState.CLOSED, actor="system", reason="breaker: probe succeeded", auto=True
        )


def cooldown_seconds() -> int:
    return int(getattr(settings, "MODEL_BREAKER_COOLDOWN_S", 300))


def half_open_due(now: dt.datetime | None = None) -> list[str]:
    """Half-open the circuits the breaker opened at least a cool-down ago (the registry sweep)."""
    from .services.registry import circuit_set

    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=cooldown_seconds())
    moved = []
    for version in ModelVersion.objects.filter(
        circuit=CircuitState.OPEN, circuit_auto=True, circuit_changed_at__lte=cutoff
    ).select_related("model"):
        circuit_set(
            version=version, state=CircuitState.HALF_OPEN, actor="system", reason="breaker: cool-down over", auto=True
        )
        moved.append(version.ref)
    return moved
