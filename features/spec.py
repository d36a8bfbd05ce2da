"""FeatureSpec: which features a model consumes, in which column order. Validated against the registry.

JSON form::

    {
      "timeframe": "1h",                      # optional: the base timeframe the spec is built for
      "features": [
        {
          "indicator": "rsi",                 # a registry name (features.indicators.REGISTRY)
          "params": {"length": 14},           # optional; defaults fill the rest
          "outputs": ["rsi"],                 # optional; which outputs of a multi-output indicator
          "lags": [1, 2],                     # optional; adds <col>_lag1, <col>_lag2 (value k bars ago)
          "transforms": ["diff"],             # optional; "diff" adds <col>_diff = col - col 1 bar ago
          "timeframe": "1d"                   # optional; compute on 1d bars, map back without lookahead
        }
      ]
    }

Transforms are deliberately few: ``lags`` and ``diff`` cover what a tabular model cannot derive
itself from one row. Normalisations (z-scores of an indicator, ratios) belong in the model.

Lags and ``diff`` count BASE bars, also for a higher-timeframe feature (``rsi_14_1d_lag1`` is the
daily RSI as seen one base bar ago). Columns of one feature are grouped by output:
``<col>, <col>_lag<k>..., <col>_diff``; a higher-timeframe feature's columns end in ``_<tf>``
before any lag suffix (``rsi_14_1d_lag1``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.errors import ApplicationError
from features.indicators import REGISTRY, Indicator
from features.timeframes import TIMEFRAMES, is_timeframe

SPEC_VERSION = 1  # part of the hash: bump when the meaning of a spec's columns changes
TRANSFORMS = ("diff",)
MAX_LAG = 10_000
_FEATURE_KEYS = {"indicator", "params", "outputs", "lags", "transforms", "timeframe"}
_SPEC_KEYS = {"features", "timeframe"}


def _timeframe_error(value: Any) -> str:
    return f"must be one of {', '.join(TIMEFRAMES)}; got {value!r}"


@dataclass(frozen=True)
class FeatureEntry:
    indicator: str
    params: tuple[tuple[str, Any], ...]  # every parameter, registry order, canonical types
    outputs: tuple[str, ...]
    lags: tuple[int, ...] = ()
    transforms: tuple[str, ...] = ()
    timeframe: str | None = None

    @property
    def definition(self) -> Indicator:
        return REGISTRY[self.indicator]

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def output_column(self, key: str) -> str:
        col = self.definition.column(key, self.param_dict)
        return f"{col}_{self.timeframe}" if self.timeframe else col

    def columns(self) -> list[str]:
        cols = []
        for key in self.outputs:
            base = self.output_column(key)
            cols.append(base)
            cols.extend(f"{base}_lag{k}" for k in self.lags)
            if "diff" in self.transforms:
                cols.append(f"{base}_diff")
        return cols

    def column_warmups(self, base_timeframe: str | None) -> dict[str, int]:
        lookbacks = self.definition.lookback(self.param_dict)
        ratio = 1
        if self.timeframe:
            if not is_timeframe(base_timeframe) or TIMEFRAMES[self.timeframe] < TIMEFRAMES[base_timeframe]:
                raise ApplicationError(
                    "invalid_spec",
                    f"Feature {self.output_column(self.outputs[0])!r} uses timeframe {self.timeframe}: its "
                    f"warm-up depends on the base timeframe, which must be one of {', '.join(TIMEFRAMES)} "
                    f"and no coarser than {self.timeframe} (got {base_timeframe!r}).",
                )
            ratio = TIMEFRAMES[self.timeframe] // TIMEFRAMES[base_timeframe]
        out = {}
        for key in self.outputs:
            w = lookbacks[key]
            if ratio > 1:
                # the value of higher bar w is first seen on the last base bar of its bucket; worst case
                # is data starting one base bar into a bucket, whose partial bucket is discarded
                w = (w + 2) * ratio - 2
            base = self.output_column(key)
            out[base] = w
            for k in self.lags:
                out[f"{base}_lag{k}"] = w + k
            if "diff" in self.transforms:
                out[f"{base}_diff"] = w + 1
        return out

    def to_json(self) -> dict:
        return {
            "indicator": self.indicator,
            "params": dict(self.params),
            "outputs": list(self.outputs),
            "lags": list(self.lags),
            "transforms": list(self.transforms),
            "timeframe": self.timeframe,
        }


@dataclass(frozen=True)
class FeatureSpec:
    features: tuple[FeatureEntry, ...]
    timeframe: str | None = None

    # --- construction / validation ---------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> FeatureSpec:
        """Parse and validate; every problem is reported at once, each with its JSON path."""
        errors: list[dict[str, str]] = []

        def err(path: str, message: str) -> None:
            errors.append({"path": path, "message": message})

        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise ApplicationError(
                    "invalid_spec",
                    f"Feature spec is not valid JSON: {exc}",
                    {"errors": [{"path": "", "message": str(exc)}]},
                ) from exc
        if not isinstance(data, Mapping):
            _raise([{"path": "", "message": 'must be an object with a "features" list'}])
        for key in data:
            if key not in _SPEC_KEYS:
                err(str(key), f"unknown key; a spec has {', '.join(sorted(_SPEC_KEYS))}")
        timeframe = data.get("timeframe")
        if timeframe is not None and not is_timeframe(timeframe):
            err("timeframe", _timeframe_error(timeframe))
            timeframe = None
        raw_features = data.get("features")
        entries: list[FeatureEntry] = []
        if not isinstance(raw_features, list) or not raw_features:
            err("features", "must be a non-empty list of feature objects")
            raw_features = []
        for i, raw in enumerate(raw_features):
            entry = _parse_entry(raw, f"features[{i}]", err)
            if entry is not None:
                entries.append(entry)
        spec = cls(tuple(entries), timeframe)
        if not errors:
            errors.extend(spec._structural_errors())
        if errors:
            _raise(errors)
        return spec

    def validate(self, base_timeframe: str | None = None) -> FeatureSpec:
        """Re-check a spec built in code (``from_json`` already did) and, given the base timeframe,
        that every feature timeframe is at least as coarse as it."""
        FeatureSpec.from_json(self.to_json())
        errors: list[dict[str, str]] = []
        base = base_timeframe or self.timeframe
        if base_timeframe is not None and not is_timeframe(base_timeframe):
            errors.append({"path": "timeframe", "message": _timeframe_error(base_timeframe)})
        elif base_timeframe and self.timeframe and base_timeframe != self.timeframe:
            errors.append(
                {
                    "path": "timeframe",
                    "message": f"the spec is built for {self.timeframe} bars, not {base_timeframe}",
                }
            )
        elif base:
            for i, entry in enumerate(self.features):
                if entry.timeframe and TIMEFRAMES[entry.timeframe] < TIMEFRAMES[base]:
                    errors.append(
                        {
                            "path": f"features[{i}].timeframe",
                            "message": f"{entry.timeframe} is finer than the base timeframe {base}",
                        }
                    )
        if errors:
            _raise(errors)
        return self

    def _structural_errors(self) -> list[dict[str, str]]:
        errors = []
        seen: dict[str, int] = {}
        for i, entry in enumerate(self.features):
            for col in entry.columns():
                if col in seen:
                    other = seen[col]
                    where = "itself" if other == i else f"features[{other}]"
                    errors.append({"path": f"features[{i}]", "message": f"duplicates column {col!r} of {where}"})
                else:
                    seen[col] = i
            if self.timeframe and entry.timeframe and TIMEFRAMES[entry.timeframe] < TIMEFRAMES[self.timeframe]:
                errors.append(
                    {
                        "path": f"features[{i}].timeframe",
                        "message": f"{entry.timeframe} is finer than the spec's timeframe {self.timeframe}",
                    }
                )
        return errors

    # --- queries -----------------------------------------------------------------------------------

    def columns(self) -> list[str]:
        return [col for entry in self.features for col in entry.columns()]

    def has_higher_timeframes(self) -> bool:
        return any(entry.timeframe for entry in self.features)

    def column_warmups(self, base_timeframe: str | None = None) -> dict[str, int]:
        base = base_timeframe or self.timeframe
        out: dict[str, int] = {}
        for entry in self.features:
            out.update(entry.column_warmups(base))
        return out

    def warmup(self, base_timeframe: str | None = None) -> int:
        """Leading bars before every column has a value. Exact for base-timeframe features; for a
        higher-timeframe one it is the worst case over where the data starts within a bucket."""
        return max(self.column_warmups(base_timeframe).values())

    def to_json(self) -> dict:
        """Canonical form: all parameters explicit, so equal specs serialise (and hash) equally."""
        return {"timeframe": self.timeframe, "features": [entry.to_json() for entry in self.features]}

    def canonical_json(self) -> str:
        return json.dumps({"version": SPEC_VERSION, **self.to_json()}, sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """sha256 of the canonical JSON: identifies the feature columns a model was trained on."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def _raise(errors: list[dict[str, str]]) -> None:
    first = errors[0]
    where = f"{first['path']}: " if first["path"] else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise ApplicationError("invalid_spec", f"Invalid feature spec: {where}{first['message']}{more}", {"errors": errors})


def _parse_entry(raw: Any, path: str, err) -> FeatureEntry | None:
    if not isinstance(raw, Mapping):
        err(path, 'must be an object like {"indicator": "rsi", "params": {"length": 14}}')
        return None
    ok = True
    for key in raw:
        if key not in _FEATURE_KEYS:
            err(f"{path}.{key}", f"unknown key; a feature has {', '.join(sorted(_FEATURE_KEYS))}")
            ok = False
    name = raw.get("indicator")
    definition = REGISTRY.get(name) if isinstance(name, str) else None
    if definition is None:
        err(f"{path}.indicator", f"unknown indicator {name!r}; choose one of {', '.join(REGISTRY)}")
        return None

    raw_params = raw.get("params", {})
    params: dict[str, Any] = {}
    if not isinstance(raw_params, Mapping):
        err(f"{path}.params", "must be an object of parameter values")
        ok = False
    else:
        params, param_errors = definition.clean_params(raw_params)
        for key, message in param_errors:
            err(f"{path}.params.{key}", message)
            ok = False

    outputs = raw.get("outputs", list(definition.default_outputs))
    if not isinstance(outputs, list) or not outputs:
        err(f"{path}.outputs", f"must be a non-empty list drawn from {', '.join(definition.output_keys)}")
        ok = False
    else:
        for j, key in enumerate(outputs):
            if key not in definition.output_keys:
                err(f"{path}.outputs[{j}]", f"unknown output {key!r}; {name} has {', '.join(definition.output_keys)}")
                ok = False
            elif outputs.index(key) != j:
                err(f"{path}.outputs[{j}]", f"output {key!r} is listed twice")
                ok = False

    lags = raw.get("lags", [])
    if not isinstance(lags, list):
        err(f"{path}.lags", "must be a list of positive integers (bars ago)")
        ok = False
        lags = []
    for j, k in enumerate(lags):
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_LAG:
            err(f"{path}.lags[{j}]", f"must be an integer from 1 to {MAX_LAG}, got {k!r}")
            ok = False
        elif lags.index(k) != j:
            err(f"{path}.lags[{j}]", f"lag {k} is listed twice")
            ok = False

    transforms = raw.get("transforms", [])
    if not isinstance(transforms, list):
        err(f"{path}.transforms", f"must be a list drawn from {', '.join(TRANSFORMS)}")
        ok = False
        transforms = []
    for j, t in enumerate(transforms):
        if t not in TRANSFORMS:
            err(
                f"{path}.transforms[{j}]",
                f"unknown transform {t!r}; supported: {', '.join(TRANSFORMS)} (use lags for past values)",
            )
            ok = False
        elif transforms.index(t) != j:
            err(f"{path}.transforms[{j}]", f"transform {t!r} is listed twice")
            ok = False

    timeframe = raw.get("timeframe")
    if timeframe is not None and not is_timeframe(timeframe):
        err(f"{path}.timeframe", _timeframe_error(timeframe))
        ok = False

    if not ok:
        return None
    return FeatureEntry(
        indicator=name,
        params=tuple(params.items()),
        outputs=tuple(outputs),
        lags=tuple(lags),
        transforms=tuple(t for t in TRANSFORMS if t in transforms),
        timeframe=timeframe,
    )


DEFAULT_SPEC = FeatureSpec.from_json(
    {
        "features": [
            {"indicator": "rsi", "params": {"length": 14}},
            {"indicator": "macd", "params": {"fast": 12, "slow": 26, "signal": 9}},
            {"indicator": "bbands", "params": {"length": 20, "std": 2.0}},
            {"indicator": "atr", "params": {"length": 14}},
            {"indicator": "adx", "params": {"length": 14}},
        ]
    }
)
