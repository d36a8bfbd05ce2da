"""The sequence-model family (``mlp_window``): a neural network over a window of past feature rows.

A row's window is ``[x_t, x_{t-1}, ..., x_{t-w+1}]``: the row itself and the ``w - 1`` rows before it,
never a later one. The window is carried by the data, as lag columns of the feature engine
(``<col>_lag<k>``, the value ``k`` bars ago, computed by the engine from past bars only, in batch and
in the live stream alike): a training job with this family trains on a derived feature set that adds
lags ``1..MAX_WINDOW-1`` to every feature (:func:`spec_with_lags`), so the live path (decisions, the
stream, backtests) gets whole windows in its one row without any new plumbing. The training matrix is
laid out in blocks (all features now, then all features one bar ago, ...; :func:`window_layout`);
the window length ``w`` is a searched hyper-parameter: :class:`LagWindow` keeps the first ``w`` blocks.

Purging accounts for the window: a row's information spans ``[t - w + 1, t + horizon]``, so the
walk-forward splits drop ``horizon + MAX_WINDOW - 1`` rows before each test block and embargo as many
after it (:mod:`.cv`, ``window``).

Stored safely (:mod:`.artifacts`): a fitted MLP becomes a :class:`WindowMLP` — scaler statistics,
weight matrices and biases as plain arrays (an ``.npz`` read with ``allow_pickle=False``) plus a
JSON header — and is evaluated with NumPy (the same numbers as scikit-learn's ``predict_proba``).

PyTorch (LSTM/CNN/Transformer) is an optional extra that is not part of this family: this module
never imports torch, and :func:`torch_available` lets tests say why they skip it.
"""

from __future__ import annotations

import importlib.util
import io
import re

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from api.errors import ApplicationError

FAMILY = "mlp_window"
WINDOWED_FAMILIES = frozenset({FAMILY})
MAX_WINDOW = 6  # the row itself + 5 bars back; lags 1..MAX_WINDOW-1 in the derived feature set
MAX_LAYER = 64
_LAG = re.compile(r"^(.*)_lag(\d+)$")
ACTIVATIONS = ("relu", "tanh")


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def windowed(families) -> bool:
    return any(f in WINDOWED_FAMILIES for f in families or ())


# --- data layout -----------------------------------------------------------------------------------


def spec_with_lags(spec: dict, window: int = MAX_WINDOW) -> dict:
    """A feature-set spec (JSON) whose every feature also has lags ``1..window-1`` (other transforms
    are dropped: a window of a diff is not a diff of a window, and every column needs its lags)."""
    out = {k: v for k, v in spec.items() if k != "features"}
    out["features"] = [{**f, "lags": list(range(1, window)), "transforms": []} for f in spec.get("features", [])]
    return out


def window_layout(names: list[str], window: int = MAX_WINDOW) -> list[str]:
    """The columns in block order (every base column, then each one lagged 1, ... ``window - 1``);
    ``invalid_features`` when a base column lacks one of those lags."""
    bases = [n for n in names if not _LAG.match(n)]
    present = set(names)
    missing = [f"{b}_lag{k}" for b in bases for k in range(1, window) if f"{b}_lag{k}" not in present]
    if not bases or missing:
        raise ApplicationError(
            "invalid_features",
            f"The {FAMILY} family needs every feature with lags 1-{window - 1} (a window of past rows); "
            f"{len(missing)} lag column(s) are missing. Train on the derived '-seq' feature set.",
            {"missing": missing[:20]},
        )
    return bases + [f"{b}_lag{k}" for k in range(1, window) for b in bases]


def lag_window(X: np.ndarray, window: int) -> np.ndarray:
    """Rows of consecutive (time-ordered) ``X`` as windows in block order: row ``t`` is
    ``[x_t, x_{t-1}, ..., x_{t-window+1}]``; NaN where the history is shorter (never a later row)."""
    X = np.asarray(X, dtype=np.float64)
    n, f = X.shape
    out = np.full((n, f * window), np.nan)
    for k in range(window):
        out[k:, k * f : (k + 1) * f] = X[: n - k]
    return out


class LagWindow(TransformerMixin, BaseEstimator):
    """Keeps the first ``window`` of ``blocks`` equal column blocks (the ``window`` most recent rows)."""

    def __init__(self, window: int = 3, blocks: int = MAX_WINDOW):
        self.window = window
        self.blocks = blocks

    def fit(self, X, y=None):
        X = np.asarray(X)
        if X.shape[1] % self.blocks or not 1 <= self.window <= self.blocks:
            raise ValueError(f"{X.shape[1]} columns are not {self.blocks} blocks, or window {self.window} too long")
        self.n_features_in_ = X.shape[1]
        self.width_ = X.shape[1] // self.blocks * self.window
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64)[:, : self.width_]


# --- the family ----------------------------------------------------------------------------------


def suggest(trial) -> dict:
    p = FAMILY
    return {
        "window": trial.suggest_int(f"{p}_window", 1, MAX_WINDOW),
        "hidden": trial.suggest_int(f"{p}_hidden", 8, MAX_LAYER, log=True),
        "layers": trial.suggest_int(f"{p}_layers", 1, 2),
        "alpha": trial.suggest_float(f"{p}_alpha", 1e-4, 10.0, log=True),
        "learning_rate_init": trial.suggest_float(f"{p}_learning_rate_init", 1e-3, 3e-2, log=True),
        "activation": trial.suggest_categorical(f"{p}_activation", list(ACTIVATIONS)),
    }


def build(params: dict, task: str, n_classes: int, seed: int):
    window = min(max(int(params.get("window", 3)), 1), MAX_WINDOW)
    hidden = min(max(int(params.get("hidden", 32)), 2), MAX_LAYER)
    layers = min(max(int(params.get("layers", 1)), 1), 2)
    activation = params.get("activation", "relu")
    kwargs = {
        "hidden_layer_sizes": (hidden,) * layers,
        "activation": activation if activation in ACTIVATIONS else "relu",
        "alpha": float(params.get("alpha", 1.0)),
        "learning_rate_init": float(params.get("learning_rate_init", 0.01)),
        "max_iter": 150,  # bounded cost on two cores; early stopping usually ends it sooner
        "early_stopping": True,  # on the last 10 % of the fold's training rows (sklearn shuffles: a cap, not a test)
        "n_iter_no_change": 8,
        "random_state": seed,
    }
    model = MLPRegressor(**kwargs) if task == "regression" else MLPClassifier(**kwargs)
    return Pipeline([("window", LagWindow(window, MAX_WINDOW)), ("scale", StandardScaler()), ("model", model)])


def is_window_mlp(est) -> bool:
    return (
        isinstance(est, Pipeline)
        and [type(s) for _, s in est.steps][:2] == [LagWindow, StandardScaler]
        and len(est.steps) == 3
        and type(est.steps[2][1]) in (MLPClassifier, MLPRegressor)
    )


# --- the fitted network as arrays ----------------------------------------------------------------


class WindowMLP:
    """A fitted window MLP as plain arrays, evaluated with NumPy: column slice, standardise, dense
    layers with ``activation``, then the output (logistic / softmax / identity)."""

    kind = "models_registry.ml.sequence.WindowMLP"

    def __init__(self, *, width, n_features, activation, output, labels, mean, scale, coefs, intercepts):
        self.width = int(width)
        self.n_features_in_ = int(n_features)
        self.activation = activation
        self.output = output
        self.labels = np.asarray(labels, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.coefs = [np.asarray(c, dtype=np.float64) for c in coefs]
        self.intercepts = [np.asarray(b, dtype=np.float64) for b in intercepts]
        self._validate()

    def _validate(self) -> None:
        bad = None
        if self.activation not in ACTIVATIONS or self.output not in ("logistic", "softmax", "identity"):
            bad = "unknown activation"
        elif not 1 <= self.width <= self.n_features_in_ or self.mean.shape != (self.width,):
            bad = "input width"
        elif self.scale.shape != (self.width,) or not len(self.coefs) == len(self.intercepts) >= 2:
            bad = "layer shapes"
        else:
            rows = self.width
            for c, b in zip(self.coefs, self.intercepts, strict=True):
                if c.ndim != 2 or c.shape[0] != rows or b.shape != (c.shape[1],) or c.shape[1] > 4096:
                    bad = "layer shapes"
                    break
                rows = c.shape[1]
        arrays = [self.mean, self.scale, *self.coefs, *self.intercepts]
        if bad is None and not all(np.isfinite(a).all() for a in arrays):
            bad = "non-finite weights"
        if bad:
            raise ValueError(f"invalid window MLP: {bad}")

    @classmethod
    def from_pipeline(cls, pipe: Pipeline) -> WindowMLP:
        window, scaler, model = (s for _, s in pipe.steps)
        regression = isinstance(model, MLPRegressor)
        return cls(
            width=window.width_,
            n_features=window.n_features_in_,
            activation=model.activation,
            output="identity" if regression else model.out_activation_,
            labels=[] if regression else np.asarray(model.classes_).astype(np.int64),
            mean=scaler.mean_,
            scale=scaler.scale_,
            coefs=model.coefs_,
            intercepts=model.intercepts_,
        )

    def forward(self, X: np.ndarray) -> np.ndarray:
        h = (np.asarray(X, dtype=np.float64)[:, : self.width] - self.mean) / self.scale
        last = len(self.coefs) - 1
        for i, (c, b) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            h = h @ c + b
            if i < last:
                h = np.maximum(h, 0.0) if self.activation == "relu" else np.tanh(h)
        if self.output == "identity":
            return h[:, 0]
        if self.output == "logistic":
            p1 = 1.0 / (1.0 + np.exp(-h[:, 0]))
            return np.column_stack([1.0 - p1, p1])
        e = np.exp(h - h.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    # the pieces :mod:`.artifacts` stores: a JSON header and named arrays
    def header(self) -> dict:
        return {
            "width": self.width,
            "n_features": self.n_features_in_,
            "activation": self.activation,
            "output": self.output,
            "layers": len(self.coefs),
        }

    def to_npz(self) -> bytes:
        arrays = {"labels": self.labels, "mean": self.mean, "scale": self.scale}
        for i, (c, b) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            arrays[f"coef_{i}"], arrays[f"intercept_{i}"] = c, b
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_npz(cls, header: dict, data: bytes) -> WindowMLP:
        expected = {"width", "n_features", "activation", "output", "layers"}
        if not isinstance(header, dict) or set(header) != expected:
            raise ValueError("invalid window MLP header")
        layers = header["layers"]
        if not isinstance(layers, int) or isinstance(layers, bool) or not 2 <= layers <= 4:
            raise ValueError("invalid window MLP header")
        names = {"labels", "mean", "scale", *(f"{k}_{i}" for i in range(layers) for k in ("coef", "intercept"))}
        with np.load(io.BytesIO(data), allow_pickle=False) as z:  # plain arrays only: no pickled objects
            if set(z.files) != names:
                raise ValueError("unexpected arrays in a window MLP")
            arrays = {k: z[k] for k in names}
        return cls(
            width=header["width"],
            n_features=header["n_features"],
            activation=header["activation"],
            output=header["output"],
            labels=arrays["labels"],
            mean=arrays["mean"],
            scale=arrays["scale"],
            coefs=[arrays[f"coef_{i}"] for i in range(layers)],
            intercepts=[arrays[f"intercept_{i}"] for i in range(layers)],
        )
