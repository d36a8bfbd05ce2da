"""The fitted model as an object (:class:`ModelBundle`) and as bytes (:func:`dump` / :func:`load`).

No pickle anywhere: unpickling runs arbitrary code, and model files are user-uploadable in effect
(they live in storage a compromised account could write). XGBoost members are stored in XGBoost's
own UBJSON format; scikit-learn members with skops, which rebuilds only the types it is told to
trust. The trusted list is :data:`SKOPS_TYPES`, exactly what the families in :mod:`.families` produce
(a test recomputes it by fitting every family on every task). ``load`` checks every type named in a
member's schema against that list BEFORE skops reads it, so an archive naming anything else (even a
type skops would trust by default) is refused with ``invalid_artifact``.

Single-row prediction (:meth:`ModelBundle.predict_one`) is the live path and has a budget of
~1 ms p99 for the whole ensemble. Calling scikit-learn per row costs far more than the arithmetic
(input validation, joblib dispatch over a forest's trees), so each member is compiled once into a
small evaluator: scikit-learn trees as flat lists walked node by node (on float32-cast inputs, exactly
as scikit-learn compares), linear models as one dot product, XGBoost trees as padded arrays walked
level by level for all trees at once (``booster.inplace_predict``, with ``nthread=1``, serves batches:
for one row its fixed overhead alone is ~0.2-0.5 ms). Tests check that these give the same numbers as
the batch ``predict_proba``.

Sequence-model members (:mod:`.sequence`, a window MLP) are stored without skops or pickle at all:
weights and scaler statistics as an ``.npz`` of plain numeric arrays (read with
``allow_pickle=False``), the layer layout as JSON in the manifest, and the member file's sha256 in
the manifest too; ``load`` refuses a member whose bytes do not match it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import skops.io as sio
import xgboost as xgb
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from api.errors import ApplicationError

from .sequence import WindowMLP, is_window_mlp

FORMAT = "automl-bundle"
FORMAT_VERSION = 1
TASKS = ("binary", "multiclass", "regression")
MAX_MEMBER_BYTES = 256 * 1024 * 1024  # uncompressed; a bounded forest is a few MB
MAX_MEMBERS = 8

# every (module.class, skops loader) a family's fitted estimator contains; see the module docstring
SKOPS_TYPES: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins.dict", "DictNode"),
        ("builtins.list", "ListNode"),
        ("builtins.str", "JsonNode"),
        ("builtins.str", "TypeNode"),
        ("builtins.tuple", "TupleNode"),
        ("numpy.float32", "NdArrayNode"),
        ("numpy.float64", "NdArrayNode"),
        ("numpy.int64", "NdArrayNode"),
        ("numpy.ndarray", "NdArrayNode"),
        ("sklearn.ensemble._forest.ExtraTreesClassifier", "ObjectNode"),
        ("sklearn.ensemble._forest.ExtraTreesRegressor", "ObjectNode"),
        ("sklearn.ensemble._forest.RandomForestClassifier", "ObjectNode"),
        ("sklearn.ensemble._forest.RandomForestRegressor", "ObjectNode"),
        ("sklearn.linear_model._logistic.LogisticRegression", "ObjectNode"),
        ("sklearn.linear_model._ridge.Ridge", "ObjectNode"),
        ("sklearn.pipeline.Pipeline", "ObjectNode"),
        ("sklearn.preprocessing._data.StandardScaler", "ObjectNode"),
        ("sklearn.tree._classes.DecisionTreeClassifier", "ObjectNode"),
        ("sklearn.tree._classes.DecisionTreeRegressor", "ObjectNode"),
        ("sklearn.tree._classes.ExtraTreeClassifier", "ObjectNode"),
        ("sklearn.tree._classes.ExtraTreeRegressor", "ObjectNode"),
        ("sklearn.tree._tree.Tree", "TreeNode"),
    }
)
SKOPS_TRUSTED = sorted({name for name, _ in SKOPS_TYPES})
_FORESTS = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)
_TOP_LEVEL = (Pipeline, *_FORESTS)
_MEMBER_NAME = re.compile(r"^member_\d+\.(ubj|skops|npz)$")
_EXTENSIONS = {"xgboost-ubj": "ubj", "skops": "skops", "mlp-npz": "npz"}


def _invalid(message: str, **details) -> ApplicationError:
    return ApplicationError("invalid_artifact", message, details or None)


# --- per-member evaluators -------------------------------------------------------------------------


def _xgb_eval(booster: xgb.Booster, task: str, n_classes: int) -> Callable[[np.ndarray], np.ndarray]:
    def batch(X: np.ndarray) -> np.ndarray:
        out = np.asarray(booster.inplace_predict(X), dtype=np.float64)
        if task == "binary":
            out = out.reshape(-1)
            return np.column_stack([1 - out, out])
        if task == "multiclass":
            return out.reshape(X.shape[0], n_classes)
        return out.reshape(-1)

    return batch


_XGB_LINKS = {"binary:logistic": "sigmoid", "multi:softprob": "softmax", "reg:squarederror": "identity"}


def _xgb_one(booster: xgb.Booster, task: str, n_classes: int) -> Callable[[np.ndarray], Any]:
    """The booster's trees as padded (trees x nodes) arrays, walked for all trees at once, one level per
    step. ``inplace_predict`` spends ~0.2 ms per call in fixed overhead whatever the model size; this
    takes ~0.05 ms for 400 depth-6 trees. Exact XGBoost semantics: float32 inputs, ``x < threshold``
    goes left, a missing value follows ``default_left``. Anything else (categorical splits, another
    objective) falls back to ``inplace_predict``."""
    model = json.loads(bytes(booster.save_raw("json")))
    learner = model["learner"]
    objective = learner["objective"]["name"]
    trees = learner["gradient_booster"]["model"]["trees"]
    link = _XGB_LINKS.get(objective)
    if learner["gradient_booster"].get("name") != "gbtree" or link is None or not trees:
        return lambda x: _xgb_eval(booster, task, n_classes)(x.reshape(1, -1))[0]
    if any(t["categories"] or any(t["split_type"]) for t in trees):
        return lambda x: _xgb_eval(booster, task, n_classes)(x.reshape(1, -1))[0]
    width = max(len(t["left_children"]) for t in trees)
    n_trees = len(trees)
    feature = np.zeros((n_trees, width), dtype=np.intp)
    threshold = np.zeros((n_trees, width), dtype=np.float32)
    left = np.tile(np.arange(width), (n_trees, 1))  # padding and leaves point at themselves
    right = left.copy()
    default_left = np.zeros((n_trees, width), dtype=bool)
    leaf = np.zeros((n_trees, width), dtype=np.float64)
    depth = 0
    for i, t in enumerate(trees):
        lc, rc = np.asarray(t["left_children"]), np.asarray(t["right_children"])
        split = lc != -1
        nodes = np.arange(lc.size)
        feature[i, : lc.size] = np.where(split, t["split_indices"], 0)
        cond = np.asarray(t["split_conditions"], dtype=np.float32)
        threshold[i, : lc.size] = np.where(split, cond, 0)
        left[i, : lc.size] = np.where(split, lc, nodes)
        right[i, : lc.size] = np.where(split, rc, nodes)
        default_left[i, : lc.size] = np.asarray(t["default_left"], dtype=bool)
        leaf[i, : lc.size] = np.where(split, 0.0, cond)
        parents = np.asarray(t["parents"])
        d = np.zeros(lc.size, dtype=np.int64)
        for node in range(1, lc.size):  # parents precede children in XGBoost's node order
            d[node] = d[parents[node]] + 1
        depth = max(depth, int(d.max()))
    groups = np.asarray(learner["gradient_booster"]["model"]["tree_info"], dtype=np.intp)
    n_out = max(n_classes, 1) if link == "softmax" else 1
    # flat arrays and global node ids (tree offset + node): one 1-D gather per attribute and level
    offset = (np.arange(n_trees) * width)[:, None]
    feature, threshold, leaf = feature.ravel(), threshold.ravel(), leaf.ravel()
    left, right, default_left = (left + offset).ravel(), (right + offset).ravel(), default_left.ravel()
    roots = offset.ravel()

    def margin(x: np.ndarray) -> np.ndarray:
        x32 = x.astype(np.float32)
        node = roots
        for _ in range(depth):
            value = x32.take(feature.take(node))
            go_left = value < threshold.take(node)
            if np.isnan(value).any():
                go_left |= np.isnan(value) & default_left.take(node)
            node = np.where(go_left, left.take(node), right.take(node))
        return np.bincount(groups, weights=leaf.take(node), minlength=n_out)

    # the intercept (base_score in margin space), measured rather than parsed: its stored form varies by version
    probe = np.zeros((1, booster.num_features()))
    base = np.asarray(booster.inplace_predict(probe, predict_type="margin"), dtype=np.float64).reshape(-1)
    base = base - margin(probe[0])

    def one(x: np.ndarray):
        z = margin(x) + base
        if link == "sigmoid":
            p1 = 1.0 / (1.0 + math.exp(-float(z[0])))
            return np.array([1.0 - p1, p1])
        if link == "softmax":
            e = np.exp(z - z.max())
            return e / e.sum()
        return float(z[0])

    return one


def _sk_batch(estimator, task: str, n_classes: int) -> Callable[[np.ndarray], np.ndarray]:
    if task == "regression":
        return lambda X: np.asarray(estimator.predict(X), dtype=np.float64)
    labels = np.asarray(estimator.classes_).astype(np.int64)

    def batch(X: np.ndarray) -> np.ndarray:
        proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
        if labels.size == n_classes and np.array_equal(labels, np.arange(n_classes)):
            return proba
        full = np.zeros((X.shape[0], n_classes))
        full[:, labels] = proba
        return full

    return batch


def _compile_tree(tree, task: str, n_classes: int, labels: np.ndarray | None):
    t = tree.tree_
    left, right = t.children_left.tolist(), t.children_right.tolist()
    feature, threshold = t.feature.tolist(), t.threshold.tolist()
    if task == "regression":
        values = t.value[:, 0, 0].tolist()
    else:
        v = t.value[:, 0, :].astype(np.float64)
        v = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300)
        full = np.zeros((v.shape[0], n_classes))
        full[:, labels] = v
        values = list(full)
    return left, right, feature, threshold, values


def _forest_one(forest, task: str, n_classes: int) -> Callable[[list[float]], Any]:
    labels = None if task == "regression" else np.asarray(forest.classes_).astype(np.int64)
    trees = [_compile_tree(e, task, n_classes, labels) for e in forest.estimators_]
    inv = 1.0 / len(trees)

    def one(x: list[float]):
        total = 0.0 if task == "regression" else np.zeros(n_classes)
        for left, right, feature, threshold, values in trees:
            node = 0
            while left[node] != -1:
                node = left[node] if x[feature[node]] <= threshold[node] else right[node]
            total = total + values[node]
        return total * inv

    return one


def _linear_one(pipe: Pipeline, task: str, n_classes: int) -> Callable[[np.ndarray], Any]:
    scaler, model = pipe.steps[0][1], pipe.steps[-1][1]
    mean, scale = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)
    coef, intercept = np.atleast_2d(model.coef_).astype(np.float64), np.atleast_1d(model.intercept_).astype(np.float64)
    w = coef / scale  # fold the scaler into the weights: one dot product per row
    b = intercept - w @ mean
    if task == "regression":
        w0, b0 = w[0], float(b[0])
        return lambda x: float(w0 @ x + b0)
    labels = np.asarray(model.classes_).astype(np.int64)

    def one(x: np.ndarray):
        z = w @ x + b
        if z.size == 1:
            p1 = 1.0 / (1.0 + math.exp(-float(z[0])))
            p = np.array([1.0 - p1, p1])
        else:
            e = np.exp(z - z.max())
            p = e / e.sum()
        if labels.size == n_classes:
            return p
        full = np.zeros(n_classes)
        full[labels] = p
        return full

    return one


def _mlp_batch(member: WindowMLP, task: str, n_classes: int) -> Callable[[np.ndarray], np.ndarray]:
    if task == "regression":
        return member.forward
    labels = member.labels

    def batch(X: np.ndarray) -> np.ndarray:
        proba = member.forward(X)
        if labels.size == n_classes and np.array_equal(labels, np.arange(n_classes)):
            return proba
        full = np.zeros((X.shape[0], n_classes))
        full[:, labels] = proba
        return full

    return batch


def _is_linear_pipeline(est) -> bool:
    return (
        isinstance(est, Pipeline)
        and len(est.steps) == 2
        and type(est.steps[0][1]) is StandardScaler
        and type(est.steps[1][1]) in (LogisticRegression, Ridge)
    )


# --- the bundle ----------------------------------------------------------------------------------


@dataclass
class ModelBundle:
    """An ensemble: ``members`` (``xgboost.Booster`` or a scikit-learn estimator from the families),
    blend ``weights`` (non-negative, summing to 1), ``task``, ``classes`` (names, label order) and
    the ``feature_names`` a row must carry, in order."""

    members: list[Any]
    weights: list[float]
    task: str
    classes: list[str]
    feature_names: list[str]
    params: list[dict] = field(default_factory=list)  # each member's family params (for the record)
    _batch: list[Callable] = field(default_factory=list, init=False, repr=False)
    _one: list[Callable] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}")
        if not self.members or len(self.members) != len(self.weights):
            raise ValueError("one weight per member, at least one member")
        members = []
        for m in self.members:
            if isinstance(m, xgb.XGBModel):  # keep the booster: native format, inplace_predict
                m = m.get_booster()
            if isinstance(m, xgb.Booster):
                m.set_param({"nthread": 1})
            if is_window_mlp(m):  # the fitted network as plain arrays: one evaluator, stored as such
                m = WindowMLP.from_pipeline(m)
            members.append(m)
        self.members = members
        self.weights = [float(w) for w in self.weights]
        self.classes = list(self.classes)
        self.feature_names = list(self.feature_names)
        k = self.n_classes
        for m in self.members:
            if isinstance(m, xgb.Booster):
                self._batch.append(_xgb_eval(m, self.task, k))
                self._one.append(_xgb_one(m, self.task, k))
            elif isinstance(m, _FORESTS):
                self._batch.append(_sk_batch(m, self.task, k))
                forest_one = _forest_one(m, self.task, k)
                # scikit-learn trees compare float32 inputs against float64 thresholds
                self._one.append(lambda x, f=forest_one: f(x.astype(np.float32).astype(np.float64).tolist()))
            elif _is_linear_pipeline(m):
                self._batch.append(_sk_batch(m, self.task, k))
                self._one.append(_linear_one(m, self.task, k))
            elif isinstance(m, WindowMLP):
                if m.output == "identity" and self.task != "regression":
                    raise ValueError("a regression network in a classification bundle")
                if m.n_features_in_ != len(self.feature_names):
                    raise ValueError("a window MLP expects a different number of features")
                batch = _mlp_batch(m, self.task, k)
                self._batch.append(batch)
                self._one.append(lambda x, b=batch: b(x.reshape(1, -1))[0])
            else:
                raise ValueError(f"unsupported member type {type(m).__name__}")

    @property
    def n_classes(self) -> int:
        return 0 if self.task == "regression" else len(self.classes)

    def _check(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ApplicationError(
                "invalid_features",
                f"Expected rows of {len(self.feature_names)} features ({', '.join(self.feature_names)}).",
            )
        return X

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) class probabilities, or (n,) predicted values for regression."""
        X = self._check(X)
        return sum(w * f(X) for w, f in zip(self.weights, self._batch, strict=True))

    def predict(self, X) -> np.ndarray:
        """Label indices (classification; ``classes[i]`` names them) or predicted returns."""
        out = self.predict_proba(X)
        return out if self.task == "regression" else out.argmax(axis=1)

    def predict_one(self, x: np.ndarray) -> dict:
        """One row, fast: ``{"label", "class", "probabilities": {name: p}}`` or ``{"prediction": r}``."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size != len(self.feature_names):
            raise ApplicationError("invalid_features", f"Expected {len(self.feature_names)} feature values.")
        total = None
        for w, f in zip(self.weights, self._one, strict=True):
            if w:
                part = w * f(x)
                total = part if total is None else total + part
        if self.task == "regression":
            return {"prediction": float(total)}
        label = int(np.argmax(total))
        probs = total.tolist()
        return {
            "label": label,
            "class": self.classes[label],
            "probabilities": dict(zip(self.classes, probs, strict=True)),
        }

    def predict_many(self, X) -> list[dict]:
        """Many rows in one batch call (the live stream's read batches), each shaped as ``predict_one``'s."""
        X = self._check(X)
        if not len(X):
            return []
        out = self.predict_proba(X)
        if self.task == "regression":
            return [{"prediction": float(v)} for v in out]
        labels = out.argmax(axis=1).tolist()
        classes = self.classes
        return [
            {"label": k, "class": classes[k], "probabilities": dict(zip(classes, row, strict=True))}
            for k, row in zip(labels, out.tolist(), strict=True)
        ]


# --- bytes -----------------------------------------------------------------------------------------


def dump(bundle: ModelBundle) -> bytes:
    """A zip: ``manifest.json`` + one ``member_<i>.ubj`` (XGBoost), ``member_<i>.skops`` or
    ``member_<i>.npz`` (window MLP: arrays, with its header and sha256 in the manifest) per member."""
    members, files = [], {}
    for i, m in enumerate(bundle.members):
        if isinstance(m, WindowMLP):
            name, data = f"member_{i}.npz", m.to_npz()
            files[name] = data
            members.append(
                {
                    "file": name,
                    "format": "mlp-npz",
                    "type": WindowMLP.kind,
                    "weight": bundle.weights[i],
                    "header": m.header(),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
            continue
        if isinstance(m, xgb.Booster):
            name, fmt, data = f"member_{i}.ubj", "xgboost-ubj", bytes(m.save_raw("ubj"))
            kind = "xgboost.Booster"
        else:
            name, fmt, data = f"member_{i}.skops", "skops", sio.dumps(m)
            kind = f"{type(m).__module__}.{type(m).__qualname__}"
        files[name] = data
        members.append({"file": name, "format": fmt, "type": kind, "weight": bundle.weights[i]})
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": bundle.task,
        "classes": bundle.classes,
        "feature_names": bundle.feature_names,
        "weights": bundle.weights,
        "members": members,
        "params": bundle.params,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, sort_keys=True))
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _skops_types(data: bytes) -> set[tuple[str, str]]:
    """Every (module.class, loader) the skops archive's schema names, read as JSON (nothing built)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            info = zf.getinfo("schema.json")
            if info.file_size > MAX_MEMBER_BYTES:
                raise _invalid("A member's schema is too large.")
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise _invalid("A scikit-learn member is not a valid skops file.") from exc
    found: set[tuple[str, str]] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__module__" in node or "__class__" in node or "__loader__" in node:
                found.add((f"{node.get('__module__')}.{node.get('__class__')}", str(node.get("__loader__"))))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _manifest(zf: zipfile.ZipFile) -> dict:
    try:
        m = json.loads(zf.read("manifest.json"))
    except (KeyError, ValueError) as exc:
        raise _invalid("The artifact has no readable manifest.json.") from exc
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("format_version") != FORMAT_VERSION:
        raise _invalid(f"Not a {FORMAT} v{FORMAT_VERSION} artifact.")
    expected = {"format", "format_version", "task", "classes", "feature_names", "weights", "members", "params"}
    if set(m) != expected:
        raise _invalid("Unexpected manifest fields.", fields=sorted(map(str, set(m) ^ expected)))
    if m["task"] not in TASKS:
        raise _invalid("Unknown task in manifest.")
    names, classes = m["feature_names"], m["classes"]
    if not isinstance(names, list) or not names or not all(isinstance(s, str) for s in names):
        raise _invalid("feature_names must be a non-empty list of strings.")
    if not isinstance(classes, list) or not all(isinstance(s, str) for s in classes):
        raise _invalid("classes must be a list of strings.")
    if (m["task"] == "regression") != (len(classes) == 0) or (m["task"] == "binary" and len(classes) != 2):
        raise _invalid("classes do not match the task.")
    members, weights = m["members"], m["weights"]
    if not isinstance(members, list) or not 1 <= len(members) <= MAX_MEMBERS:
        raise _invalid("members must be a list of 1 to 8 entries.")
    if not isinstance(weights, list) or len(weights) != len(members):
        raise _invalid("One weight per member is required.")
    if not all(isinstance(w, int | float) and not isinstance(w, bool) and 0 <= w <= 1 for w in weights):
        raise _invalid("Weights must be numbers in [0, 1].")
    if abs(sum(weights) - 1) > 1e-6:
        raise _invalid("Weights must sum to 1.")
    if not isinstance(m["params"], list):
        raise _invalid("params must be a list.")
    for i, mem in enumerate(members):
        keys = {"file", "format", "type", "weight"}
        if isinstance(mem, dict) and mem.get("format") == "mlp-npz":
            keys |= {"header", "sha256"}
        if not isinstance(mem, dict) or set(mem) != keys:
            raise _invalid("Malformed member entry.", member=i)
        if mem["format"] not in _EXTENSIONS:
            raise _invalid("Unknown member format.", member=i)
        if mem["file"] != f"member_{i}.{_EXTENSIONS[mem['format']]}":
            raise _invalid("Unexpected member file name.", member=i)
    return m


def load(data: bytes) -> ModelBundle:
    """The bundle from :func:`dump`'s bytes; anything unexpected raises ``invalid_artifact``."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, TypeError) as exc:
        raise _invalid("The artifact is not a zip archive.") from exc
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names) or "manifest.json" not in names:
            raise _invalid("The archive lacks a manifest or has duplicate entries.")
        if any(i.file_size > MAX_MEMBER_BYTES for i in infos):
            raise _invalid("An archive entry is too large.")
        m = _manifest(zf)
        expected_files = {"manifest.json", *(mem["file"] for mem in m["members"])}
        if set(names) != expected_files or not all(_MEMBER_NAME.match(n) for n in expected_files - {"manifest.json"}):
            raise _invalid("The archive's files do not match its manifest.")
        task, n_features = m["task"], len(m["feature_names"])
        members = []
        for i, mem in enumerate(m["members"]):
            raw = zf.read(mem["file"])
            if mem["format"] == "mlp-npz":
                if mem["type"] != WindowMLP.kind:
                    raise _invalid("Unexpected member type.", member=i)
                if not isinstance(mem["sha256"], str) or hashlib.sha256(raw).hexdigest() != mem["sha256"]:
                    raise _invalid("A network member does not match its recorded sha256.", member=i)
                try:
                    net = WindowMLP.from_npz(mem["header"], raw)
                except Exception as exc:  # numpy raises several types for malformed archives
                    raise _invalid("A network member could not be read.", member=i) from exc
                if net.n_features_in_ != n_features:
                    raise _invalid("A network member expects a different number of features.", member=i)
                members.append(net)
                continue
            if mem["format"] == "xgboost-ubj":
                if mem["type"] != "xgboost.Booster":
                    raise _invalid("Unexpected member type.", member=i)
                booster = xgb.Booster()
                try:
                    booster.load_model(bytearray(raw))
                except xgb.core.XGBoostError as exc:
                    raise _invalid("An XGBoost member is not a valid model.", member=i) from exc
                if booster.num_features() != n_features:
                    raise _invalid("An XGBoost member expects a different number of features.", member=i)
                members.append(booster)
                continue
            unexpected = _skops_types(raw) - SKOPS_TYPES
            if unexpected:
                raise _invalid(
                    "A member contains types this application never produces.",
                    member=i,
                    types=sorted(t for t, _ in unexpected),
                )
            try:
                est = sio.loads(raw, trusted=SKOPS_TRUSTED)
            except Exception as exc:  # skops raises several types for malformed content
                raise _invalid("A scikit-learn member could not be read.", member=i) from exc
            if not isinstance(est, _TOP_LEVEL) or (isinstance(est, Pipeline) and not _is_linear_pipeline(est)):
                raise _invalid("Unexpected member type.", member=i, type=type(est).__name__)
            if f"{type(est).__module__}.{type(est).__qualname__}" != mem["type"]:
                raise _invalid("A member's type does not match the manifest.", member=i)
            if getattr(est, "n_features_in_", n_features) != n_features:
                raise _invalid("A member expects a different number of features.", member=i)
            members.append(est)
        try:
            return ModelBundle(
                members=members,
                weights=m["weights"],
                task=task,
                classes=m["classes"],
                feature_names=m["feature_names"],
                params=m["params"],
            )
        except ValueError as exc:
            raise _invalid(str(exc)) from exc
