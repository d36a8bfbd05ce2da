"""What a model predicts, and the labels for it.

A label at row ``t`` is computed from ``close[t]`` and ``close[t + h]`` only, so it is KNOWN at
``t + h``, not at ``t``. That is the reason cross-validation must purge: a training row whose label
is only known inside (or after) a test block carries information from the test period
(:mod:`models_registry.ml.cv`). The last ``h`` rows have no label at all (their future has not
happened yet) and come back as NaN; training drops them, and live prediction is exactly about them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from api.errors import ApplicationError

KINDS = ("direction", "ternary", "return")
DEAD_BAND_UNITS = ("pct", "atr")
MAX_HORIZON = 500
CLASS_NAMES = {"direction": ["down", "up"], "ternary": ["down", "flat", "up"]}


@dataclass(frozen=True)
class TargetSpec:
    kind: str = "direction"  # "direction" (binary up/down), "ternary" (down/flat/up with dead band), "return"
    horizon: int = 1
    dead_band: float = 0.0  # "pct": a fraction (0.002 = 0.2 %); "atr": a multiple of ATR at t
    dead_band_unit: str = "pct"

    def validate(self) -> TargetSpec:
        errors = {}
        if self.kind not in KINDS:
            errors["kind"] = f"must be one of {', '.join(KINDS)}"
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int | np.integer):
            errors["horizon"] = "must be an integer number of bars"
        elif not 1 <= self.horizon <= MAX_HORIZON:
            errors["horizon"] = f"must be between 1 and {MAX_HORIZON} bars"
        if not isinstance(self.dead_band, int | float) or not np.isfinite(self.dead_band) or self.dead_band < 0:
            errors["dead_band"] = "must be a finite number >= 0"
        elif self.kind == "ternary" and self.dead_band <= 0:
            errors["dead_band"] = "a ternary target needs dead_band > 0 (the width of the 'flat' class)"
        if self.dead_band_unit not in DEAD_BAND_UNITS:
            errors["dead_band_unit"] = f"must be one of {', '.join(DEAD_BAND_UNITS)}"
        if errors:
            raise ApplicationError("invalid_target", "The target is invalid; see details.", {"errors": errors})
        return self

    @property
    def task(self) -> str:
        return {"direction": "binary", "ternary": "multiclass", "return": "regression"}[self.kind]

    @property
    def classes(self) -> list[str]:
        """Class names in label order (label k is ``classes[k]``); empty for regression."""
        return list(CLASS_NAMES.get(self.kind, []))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> TargetSpec:
        if not isinstance(data, dict):
            raise ApplicationError("invalid_target", "The target must be an object.")
        unknown = set(data) - {"kind", "horizon", "dead_band", "dead_band_unit"}
        if unknown:
            raise ApplicationError(
                "invalid_target", f"Unknown target field(s): {', '.join(sorted(map(str, unknown)))}."
            )
        spec = cls(**data)
        if isinstance(spec.dead_band, int) and not isinstance(spec.dead_band, bool):
            spec = cls(**{**data, "dead_band": float(spec.dead_band)})
        return spec.validate()


def forward_returns(close: np.ndarray, horizon: int) -> np.ndarray:
    """``close[t + h] / close[t] - 1``; NaN for the last ``h`` rows (the future is unknown)."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] > horizon:
        out[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    return out


def make_labels(close: np.ndarray, target: TargetSpec, atr: np.ndarray | None = None) -> np.ndarray:
    """Float64 labels, NaN where unknown (last ``h`` rows, or where ATR / close are NaN).

    direction: 1 if the forward return is > 0 else 0 (a tie is "not up": 0);
    ternary: 0 down, 1 flat (|r| <= band), 2 up, with band = dead_band (pct) or dead_band * atr[t] / close[t];
    return: the forward return itself.
    """
    target.validate()
    close = np.asarray(close, dtype=np.float64)
    r = forward_returns(close, target.horizon)
    known = ~np.isnan(r)
    if target.kind == "return":
        return r
    labels = np.full(r.shape[0], np.nan)
    if target.kind == "direction":
        labels[known] = (r[known] > 0).astype(np.float64)
        return labels
    if target.dead_band_unit == "atr":
        if atr is None:
            raise ApplicationError("invalid_target", "A dead band in ATR units needs the ATR series.")
        atr = np.asarray(atr, dtype=np.float64)
        if atr.shape != close.shape:
            raise ApplicationError("invalid_target", "The ATR series must have one value per bar.")
        band = target.dead_band * atr / close
        known &= ~np.isnan(band)
    else:
        band = np.full(r.shape[0], float(target.dead_band))
    rk, bk = r[known], band[known]
    labels[known] = np.where(rk > bk, 2.0, np.where(rk < -bk, 0.0, 1.0))
    return labels
