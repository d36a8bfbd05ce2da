"""Registry fixtures without a search: a small fitted bundle stored as a real, sealed version."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from features.selectors import feature_set_get
from models_registry.ml import artifacts
from models_registry.services import registry

FEATURES = ["f1", "f2", "f3"]


def small_bundle(seed: int = 0) -> artifacts.ModelBundle:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((300, 3))
    y = (X[:, 0] + 0.5 * rng.standard_normal(300) > 0).astype(int)
    pipe = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(X, y)
    return artifacts.ModelBundle(
        members=[pipe], weights=[1.0], task="binary", classes=["down", "up"], feature_names=FEATURES
    )


def stored_version(
    name: str = "m",
    *,
    no_edge: bool = False,
    accuracy: float = 0.56,
    seed: int = 0,
    bundle: artifacts.ModelBundle | None = None,
    feature_set=None,
):
    """A READY version of ``name`` made by its own (finished) training job: ``small_bundle`` on the
    ``default`` feature set, or the ``bundle`` given, over ``feature_set``."""
    report = {
        "oos": {"accuracy": accuracy, "log_loss": 0.68},
        "baselines": {"majority": {"accuracy": 0.51}, "persistence": {"accuracy": 0.5}},
        "significance": {"against": "majority", "p_value": 0.5 if no_edge else 0.001},
        "no_edge": no_edge,
    }
    return registry.version_from_bundle(
        model_name=name,
        bundle=bundle or small_bundle(seed),
        feature_set=feature_set or feature_set_get(ref="default"),
        symbol="TEST",
        timeframe="1d",
        report=report,
        params={"family": "logistic"},
        rows_used=300,
        no_edge=no_edge,
        actor="test",
    )
