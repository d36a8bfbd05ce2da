"""Bundles: batch and single-row predictions agree, bytes round-trip exactly, and load refuses
anything this application does not produce (no pickle, no unexpected skops types)."""

from __future__ import annotations

import ast
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.neighbors import KNeighborsClassifier

from api.errors import ApplicationError
from models_registry.ml import artifacts
from models_registry.ml.artifacts import SKOPS_TYPES, ModelBundle, _skops_types, dump, load
from models_registry.ml.families import FAMILIES, TABULAR

CLASSES = {"binary": ["down", "up"], "multiclass": ["down", "flat", "up"], "regression": []}
PARAMS = {  # the upper bounds of each family: the slowest bundles the search can produce
    "xgboost": {"n_estimators": 400, "max_depth": 6},
    "logistic": {"C": 1.0},
    "random_forest": {"n_estimators": 60, "max_depth": 8, "min_samples_leaf": 20, "max_features": 0.6},
    "extra_trees": {"n_estimators": 60, "max_depth": 8, "min_samples_leaf": 20, "max_features": 0.6},
}


def _data(task: str, n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    signal = X[:, 0] + 0.5 * X[:, 1] + rng.standard_normal(n)
    if task == "binary":
        y = (signal > 0).astype(int)
    elif task == "multiclass":
        y = np.digitize(signal, [-0.5, 0.5])
    else:
        y = 0.01 * signal
    return X, y


def _bundle(task: str, families=TABULAR, weights=None) -> ModelBundle:
    X, y = _data(task)
    members = [FAMILIES[f].build({"family": f, **PARAMS[f]}, task, len(CLASSES[task])).fit(X, y) for f in families]
    weights = weights or [1.0 / len(members)] * len(members)
    return ModelBundle(
        members, weights, task, CLASSES[task], ["a", "b", "c", "d"], params=[{"family": f} for f in families]
    )


@pytest.fixture(scope="module", params=["binary", "multiclass", "regression"])
def bundle(request):
    return _bundle(request.param)


def test_predict_one_equals_predict_proba(bundle):
    X, _ = _data(bundle.task, 50, seed=1)
    batch = bundle.predict_proba(X)
    for i in range(X.shape[0]):
        one = bundle.predict_one(X[i])
        if bundle.task == "regression":
            assert one["prediction"] == pytest.approx(batch[i], rel=1e-5, abs=1e-6)
        else:
            probs = np.array([one["probabilities"][c] for c in bundle.classes])
            np.testing.assert_allclose(probs, batch[i], rtol=1e-5, atol=1e-6)
            assert one["label"] == int(np.argmax(batch[i])) and one["class"] == bundle.classes[one["label"]]


def test_predict_many_is_predict_one_in_one_call(bundle):
    """The stream's batch path gives each row what the single-row path gives."""
    X, _ = _data(bundle.task, 30, seed=3)
    many = bundle.predict_many(X)
    assert len(many) == 30 and bundle.predict_many(X[:0]) == []
    for x, got in zip(X, many, strict=True):
        one = bundle.predict_one(x)
        assert got.keys() == one.keys()
        if bundle.task == "regression":
            assert got["prediction"] == pytest.approx(one["prediction"], rel=1e-5, abs=1e-6)
        else:
            assert got["class"] == one["class"] and got["label"] == one["label"]
            for c in bundle.classes:
                assert got["probabilities"][c] == pytest.approx(one["probabilities"][c], rel=1e-5, abs=1e-6)


def test_each_member_single_row_path_matches_batch(bundle):
    """Per member: the compiled single-row evaluators (tree walk, folded linear) against scikit-learn."""
    X, _ = _data(bundle.task, 40, seed=2)
    for batch, one in zip(bundle._batch, bundle._one, strict=True):
        expected = batch(X)
        got = np.array([one(x) for x in X])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)  # XGBoost sums in float32


def test_round_trip_gives_identical_predictions(bundle):
    data = dump(bundle)
    again = load(data)
    X, _ = _data(bundle.task, 100, seed=3)
    np.testing.assert_array_equal(again.predict_proba(X), bundle.predict_proba(X))
    assert again.predict_one(X[0]) == bundle.predict_one(X[0])
    assert (again.task, again.classes, again.feature_names, again.weights) == (
        bundle.task,
        bundle.classes,
        bundle.feature_names,
        bundle.weights,
    )
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == ["manifest.json", "member_0.ubj", "member_1.skops", "member_2.skops", "member_3.skops"]


def test_skops_types_are_what_the_families_produce():
    """The trusted list equals the union of types in every family's fitted estimator, every task."""
    found = set()
    for task in CLASSES:
        X, y = _data(task, 200)
        for name, family in FAMILIES.items():
            if name not in TABULAR or name == "xgboost":  # xgboost: UBJSON; the sequence model: arrays
                continue
            est = family.build({}, task, len(CLASSES[task])).fit(X, y)
            found |= _skops_types(sio.dumps(est))
            est = family.build({}, task, len(CLASSES[task])).fit(X.astype(np.float32), y.astype(np.float64))
            found |= _skops_types(sio.dumps(est))
    assert found == set(SKOPS_TYPES)


def _rewrite(data: bytes, *, manifest=None, files=None) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in src.namelist():
            content = src.read(name)
            if name == "manifest.json" and manifest is not None:
                m = json.loads(content)
                manifest(m)
                content = json.dumps(m).encode()
            if files and name in files:
                content = files[name]
            zf.writestr(name, content)
        for name, content in (files or {}).items():
            if name not in src.namelist():
                zf.writestr(name, content)
    return out.getvalue()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.update(format_version=99),
        lambda m: m.update(task="ranking"),
        lambda m: m.update(weights=[0.9, 0.9]),
        lambda m: m["members"][0].update(format="pickle"),
        lambda m: m["members"][0].update(type="builtins.eval"),
        lambda m: m["members"][1].update(file="../member_1.skops"),
        lambda m: m.update(extra="x"),
        lambda m: m.update(feature_names=["a", "b", "c"]),  # member expects 4 features
    ],
)
def test_tampered_manifest_is_rejected(tamper):
    data = dump(_bundle("binary", ["xgboost", "logistic"]))
    with pytest.raises(ApplicationError) as exc:
        load(_rewrite(data, manifest=tamper))
    assert exc.value.code == "invalid_artifact"


def test_unexpected_skops_type_is_rejected():
    """A well-formed skops file of a type skops itself would trust by default, but no family makes."""
    X, y = _data("binary")
    data = dump(_bundle("binary", ["logistic"]))
    knn = sio.dumps(KNeighborsClassifier().fit(X, y))

    def retype(m):
        m["members"][0]["type"] = "sklearn.neighbors._classification.KNeighborsClassifier"

    with pytest.raises(ApplicationError) as exc:
        load(_rewrite(data, manifest=retype, files={"member_0.skops": knn}))
    assert exc.value.code == "invalid_artifact"
    assert "sklearn.neighbors._classification.KNeighborsClassifier" in exc.value.details["types"]


def test_schema_naming_a_dangerous_function_is_rejected_before_loading():
    data = dump(_bundle("binary", ["logistic"]))
    member = zipfile.ZipFile(io.BytesIO(data)).read("member_0.skops")
    evil_schema = json.loads(zipfile.ZipFile(io.BytesIO(member)).read("schema.json"))
    evil_schema["content"]["content"]["steps"]["content"][0] = {
        "__class__": "system",
        "__module__": "os",
        "__loader__": "FunctionNode",
        "content": {"module_path": "os", "function": "system"},
    }
    evil = _rewrite(member, files={"schema.json": json.dumps(evil_schema).encode()})
    with pytest.raises(ApplicationError) as exc:
        load(_rewrite(data, files={"member_0.skops": evil}))
    assert "os.system" in exc.value.details["types"]


@pytest.mark.parametrize(
    "data",
    [b"not a zip", b"", _rewrite(dump(_bundle("binary", ["logistic"])), files={"member_1.skops": b"x"})],
)
def test_garbage_and_extra_files_are_rejected(data):
    with pytest.raises(ApplicationError) as exc:
        load(data)
    assert exc.value.code == "invalid_artifact"


def test_no_module_of_the_package_imports_pickle():
    package = Path(artifacts.__file__).parent
    banned = {"pickle", "cPickle", "joblib", "cloudpickle", "dill", "shelve", "marshal"}
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & banned, f"{path.name} imports {names & banned}"


def test_xgboost_single_row_path_handles_missing_values_like_xgboost():
    X, y = _data("binary", 800)
    X[::7, 1] = np.nan  # trained with missing values: splits learn a default direction
    est = FAMILIES["xgboost"].build({"n_estimators": 100, "max_depth": 4}, "binary", 2).fit(X, y)
    bundle = ModelBundle([est], [1.0], "binary", CLASSES["binary"], ["a", "b", "c", "d"])
    Q, _ = _data("binary", 100, seed=9)
    Q[::3, 1] = np.nan
    Q[::5, 2] = np.nan
    expected = bundle.predict_proba(Q)
    got = np.array([list(bundle.predict_one(q)["probabilities"].values()) for q in Q])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
