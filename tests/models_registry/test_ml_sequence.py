"""The sequence-model family (mlp_window): windows hold past rows only, the folds purge for the window,
a planted lagged pattern is found and shuffled labels are not, the network is stored as sha256-checked
arrays (never pickle), and a training job's version is deployed and voted on by the ML agent."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from django_tenants.utils import schema_context
from sklearn.neural_network import MLPClassifier

from api.errors import ApplicationError
from features.engine import compute_batch
from features.spec import FeatureSpec
from marketdata.samples import SAMPLE_END, SAMPLES
from marketdata.synthetic import generate_bars
from models_registry.ml import sequence
from models_registry.ml.artifacts import ModelBundle, dump, load
from models_registry.ml.cv import purged_walk_forward
from models_registry.ml.families import FAMILIES, TABULAR
from models_registry.ml.targets import TargetSpec
from models_registry.ml.train import recommend, train
from models_registry.samples import MOMENTUM_SPEC

W = sequence.MAX_WINDOW
CLASSES = {"binary": ["down", "up"], "multiclass": ["down", "flat", "up"], "regression": []}


def _demo_bars(n: int | None = None) -> pd.DataFrame:
    """The demo's BTC-USD daily sample (a planted lag-2 momentum edge), optionally its first ``n`` bars."""
    symbol, _, timeframe, size, seed, price, vol, signal = SAMPLES[0]
    assert (symbol, timeframe) == ("BTC-USD", "1d") and signal == (0.1, 2)
    bars = generate_bars(
        size,
        timeframe="1d",
        seed=seed,
        start=SAMPLE_END - size * pd.Timedelta("1D"),
        start_price=price,
        annual_vol=vol,
        planted_signal=signal[0],
        planted_lag=signal[1],
    )
    return bars if n is None else bars.iloc[:n]


def _seq_features(bars: pd.DataFrame, spec: dict = MOMENTUM_SPEC) -> pd.DataFrame:
    return compute_batch(bars, FeatureSpec.from_json(sequence.spec_with_lags(spec)), "1d", direct=True)


# --- windows hold past rows only ---------------------------------------------------------------------


def test_lag_window_rows_are_the_row_and_the_rows_before_it_never_a_later_one():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    win = sequence.lag_window(X, 4)
    for t in range(3, 50):
        np.testing.assert_array_equal(win[t], np.concatenate([X[t], X[t - 1], X[t - 2], X[t - 3]]))
    assert np.isnan(win[:3, -3:]).all() and not np.isnan(win[3:]).any()
    # the shift test: changing every row after t changes no window up to t
    later = X.copy()
    later[30:] += 100.0
    np.testing.assert_array_equal(sequence.lag_window(later, 4)[:30], win[:30])


def test_the_feature_engine_windows_are_past_values_and_ignore_later_bars():
    bars = _demo_bars(400)
    X = _seq_features(bars)
    cols = sequence.window_layout(list(X.columns))
    base = [c for c in cols if "_lag" not in c]
    assert cols[: len(base)] == base and len(cols) == len(base) * W  # block order: now, 1 bar ago, ...
    for b in base:
        for k in range(1, W):
            np.testing.assert_array_equal(X[f"{b}_lag{k}"].to_numpy(), X[b].shift(k).to_numpy())
    # bars after t moved: nothing up to t changes
    moved = bars.copy()
    moved.iloc[300:, :4] *= 1.5
    again = _seq_features(moved)
    pd.testing.assert_frame_equal(again.iloc[:300], X.iloc[:300])
    assert not np.allclose(again.iloc[301:].dropna().to_numpy(), X.iloc[301:].dropna().to_numpy())


def test_lag_window_step_keeps_the_most_recent_blocks_and_layout_needs_every_lag():
    X = np.arange(2 * 3 * W, dtype=float).reshape(2, 3 * W)
    step = sequence.LagWindow(window=2, blocks=W).fit(X)
    np.testing.assert_array_equal(step.transform(X), X[:, :6])
    with pytest.raises(ValueError):
        sequence.LagWindow(window=2, blocks=W).fit(np.zeros((2, 3 * W + 1)))
    with pytest.raises(ApplicationError) as exc:
        sequence.window_layout(["rsi_14", "rsi_14_lag1"])
    assert exc.value.code == "invalid_features" and "rsi_14_lag2" in exc.value.details["missing"]


def test_folds_purge_and_embargo_for_the_window():
    h, n = 1, 1000
    plain = purged_walk_forward(n, n_splits=4, horizon=h)
    wide = purged_walk_forward(n, n_splits=4, horizon=h, window=W)
    ends = []
    for (tr0, te0), (tr, te) in zip(plain, wide, strict=True):
        np.testing.assert_array_equal(te, te0)  # every family is scored on the same rows
        start = te[0]
        assert tr[tr < start].max() == start - h - W  # rows t with t + h >= start - (W - 1) are purged
        for end in ends:  # rows whose window reaches into an earlier test block are embargoed
            assert not np.isin(np.arange(end, end + h + W - 1), tr).any()
            assert end + h + W - 1 in tr or end + h + W - 1 >= start - h - W + 1
        ends.append(te[-1] + 1)
        assert set(tr) <= set(tr0)


# --- honesty -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_result():
    bars = _demo_bars()
    return train(_seq_features(bars), bars["close"].to_numpy(), TargetSpec(), families=["mlp_window"], n_trials=6)


def test_the_planted_lagged_pattern_is_found_better_than_the_baselines(demo_result):
    report = demo_result.report
    assert demo_result.params["family"] == "mlp_window" and 1 <= demo_result.params["window"] <= W
    assert report["no_edge"] is False
    acc = report["oos"]["accuracy"]
    assert acc > report["baselines"]["majority"]["accuracy"] + 0.03
    assert acc > report["baselines"]["persistence"]["accuracy"] + 0.03
    assert report["significance"]["p_value"] < 0.05
    assert len(demo_result.feature_names) % W == 0  # block layout, so the window step slices it


def test_shuffled_labels_have_no_edge():
    """The real features, labels from a close series whose returns were permuted (the pattern destroyed)."""
    bars = _demo_bars(2000)
    close = bars["close"].to_numpy()
    r = close[1:] / close[:-1]
    shuffled = np.r_[close[0], close[0] * np.cumprod(np.random.default_rng(0).permutation(r))]
    result = train(_seq_features(bars), shuffled, TargetSpec(), families=["mlp_window"], n_trials=4)
    assert result.report["no_edge"] is True
    assert abs(result.report["oos"]["accuracy"] - 0.5) <= 0.04


def test_training_without_lag_columns_says_what_is_missing():
    bars = _demo_bars(600)
    X = compute_batch(bars, FeatureSpec.from_json(MOMENTUM_SPEC), "1d", direct=True)
    with pytest.raises(ApplicationError) as exc:
        train(X, bars["close"].to_numpy(), TargetSpec(), families=["mlp_window"], n_trials=1)
    assert exc.value.code == "invalid_features"


def test_recommendations_keep_to_tabular_families_and_mention_the_sequence_model():
    big = recommend(30_000, 10, "1h", [])
    assert set(big["families"]) == set(TABULAR) and "mlp_window" not in big["families"]
    assert any("mlp_window" in n for n in big["notes"])
    assert "mlp_window" in FAMILIES


# --- the artifact: arrays + JSON, sha256-checked -------------------------------------------------


def _data(task: str, n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2 * W))
    signal = X[:, 0] - X[:, 2] + 0.5 * rng.standard_normal(n)  # column 2: feature 0 one bar ago
    if task == "binary":
        return X, (signal > 0).astype(int)
    if task == "multiclass":
        return X, np.digitize(signal, [-0.5, 0.5])
    return X, 0.01 * signal


def _bundle(task: str) -> ModelBundle:
    X, y = _data(task)
    params = {"window": 2, "hidden": 16, "layers": 2, "activation": "tanh"}
    members = [FAMILIES["mlp_window"].build(params, task, len(CLASSES[task])).fit(X, y)]
    members.append(FAMILIES["logistic"].build({}, task, len(CLASSES[task])).fit(X, y))
    names = [f"f{i}" for i in range(2)] + [f"f{i}_lag{k}" for k in range(1, W) for i in range(2)]
    return ModelBundle(members, [0.7, 0.3], task, CLASSES[task], names, params=[{"family": "mlp_window"}, {}])


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_network_round_trips_as_arrays_with_scikit_learns_numbers(task):
    X, y = _data(task, 60, seed=1)
    fitted = FAMILIES["mlp_window"].build({"window": 3, "hidden": 8}, task, len(CLASSES[task])).fit(*_data(task))
    bundle = ModelBundle([fitted], [1.0], task, CLASSES[task], [f"c{i}" for i in range(2 * W)])
    expected = fitted.predict(X) if task == "regression" else fitted.predict_proba(X)
    np.testing.assert_allclose(bundle.predict_proba(X), expected, rtol=1e-9, atol=1e-12)
    mixed = _bundle(task)
    data = dump(mixed)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == ["manifest.json", "member_0.npz", "member_1.skops"]
    again = load(data)
    np.testing.assert_array_equal(again.predict_proba(X), mixed.predict_proba(X))
    for x in X[:5]:
        assert again.predict_one(x) == mixed.predict_one(x)
        one = mixed.predict_one(x)
        batch = mixed.predict_proba(x[None, :])[0]
        got = one["prediction"] if task == "regression" else [one["probabilities"][c] for c in mixed.classes]
        np.testing.assert_allclose(got, batch, rtol=1e-9, atol=1e-12)


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
    return out.getvalue()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_a_network_member_that_does_not_match_its_sha256_is_refused():
    data = dump(_bundle("binary"))
    raw = zipfile.ZipFile(io.BytesIO(data)).read("member_0.npz")
    with np.load(io.BytesIO(raw)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["coef_0"] = arrays["coef_0"] * 2  # a doctored weight matrix
    doctored = _npz(**arrays)
    with pytest.raises(ApplicationError) as exc:
        load(_rewrite(data, files={"member_0.npz": doctored}))
    assert exc.value.code == "invalid_artifact" and "sha256" in exc.value.message

    def forged(m):  # the same forgery with its sha256 in the manifest is read (the sha256 guards integrity)...
        m["members"][0]["sha256"] = hashlib.sha256(doctored).hexdigest()

    assert load(_rewrite(data, manifest=forged, files={"member_0.npz": doctored})).members[0].coefs[0].shape

    for change in (
        lambda m: m["members"][0].pop("sha256"),
        lambda m: m["members"][0]["header"].update(activation="exec"),
        lambda m: m["members"][0]["header"].update(layers=9),
        lambda m: m["members"][0].update(type="sklearn.neural_network.MLPClassifier"),
        lambda m: m["members"][0].update(format="pickle"),
    ):
        with pytest.raises(ApplicationError) as exc:
            load(_rewrite(data, manifest=change))
        assert exc.value.code == "invalid_artifact"


def test_pickled_objects_in_a_network_member_are_never_loaded():
    """...but only plain numeric arrays are: an object array (pickle inside the npz) is refused even
    when the attacker also rewrites the recorded sha256."""
    data = dump(_bundle("binary"))
    raw = zipfile.ZipFile(io.BytesIO(data)).read("member_0.npz")
    with np.load(io.BytesIO(raw)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["mean"] = np.array([MLPClassifier()], dtype=object)  # would unpickle a class on load
    evil = _npz(**arrays)

    def sha(m):
        m["members"][0]["sha256"] = hashlib.sha256(evil).hexdigest()

    with pytest.raises(ApplicationError) as exc:
        load(_rewrite(data, manifest=sha, files={"member_0.npz": evil}))
    assert exc.value.code == "invalid_artifact"


def test_torch_extra_is_optional():
    if not sequence.torch_available():
        pytest.skip("PyTorch is not installed: the optional LSTM/CNN/Transformer extra is not available here")
    import torch  # noqa: F401 - the extra only needs to import; the family itself never uses torch

    assert "mlp_window" in FAMILIES


# --- end to end: a training job, its version deployed, the ML agent votes ------------------------


@pytest.mark.django_db
def test_a_sequence_training_job_is_deployed_and_the_ml_agent_votes_on_it(alpha, usage_redis):
    from features.models import FeatureSet
    from features.services import feature_set_create
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv
    from marketdata.validation import read_table
    from models_registry.models import JobState, TrainingJob
    from models_registry.services import model_deploy
    from models_registry.services.training import model_retrain, training_job_create, training_job_run

    bars = _demo_bars()  # the demo sample, 3,000 daily bars
    with schema_context(alpha.tenant.schema_name):
        md_services.bars_import(tenant=alpha.tenant, symbol="SEQ", timeframe="1d", raw=read_table(as_csv(bars), "csv"))
        feature_set_create(name="momentum", spec=MOMENTUM_SPEC, actor="test")
        job, _ = training_job_create(
            tenant=alpha.tenant,
            actor="test",
            model_name="seq",
            symbol="SEQ",
            timeframe="1d",
            feature_set="momentum",
            families=["mlp_window"],
            n_trials=6,
            enqueue=False,
        )
        assert job.params["feature_set"] == "momentum-seq@1"  # derived: the lags make the windows
        assert training_job_run(job_id=job.pk) == JobState.SUCCEEDED, job.error
        job.refresh_from_db()
        version = job.model_version
        assert version.params["family"] == "mlp_window" and version.feature_set.ref == "momentum-seq@1"
        assert not version.no_edge, version.report["oos"]
        assert len(version.feature_names) == len(version.feature_set.columns)
        model_deploy(model=version.model, version=version, reason="test", actor="test")
    d = alpha.client(scope="trade").post("/api/v1/decisions/", {"symbol": "SEQ"}, format="json")
    assert d.status_code == 201, d.content
    body = d.json()
    assert body["model_version"] == "seq@1"
    vote = next(v for v in body["votes"] if v["agent"] == "ml")
    assert vote["details"]["version"] == "seq@1" and 0 <= vote["details"]["p_up"] <= 1
    # the same job a second time reuses the derived feature set (no new version of it)
    with schema_context(alpha.tenant.schema_name):
        again, _ = training_job_create(
            tenant=alpha.tenant,
            actor="test",
            model_name="seq",
            symbol="SEQ",
            timeframe="1d",
            feature_set="momentum",
            families=["mlp_window", "logistic"],
            n_trials=1,
            enqueue=False,
        )
        assert again.params["feature_set"] == "momentum-seq@1"
        # retraining the recipe keeps the windows (the derived set already has every lag)
        retrain = model_retrain(tenant=alpha.tenant, model=version.model, actor="test")
        assert retrain.params["feature_set"] == "momentum-seq@1" and retrain.params["families"] == ["mlp_window"]
    # the API: an unknown family next to it writes nothing (no job, no derived feature set)...
    analyst = alpha.client(role="analyst")
    body = {"model": "seq-api", "symbol": "SEQ", "n_trials": 2, "families": ["mlp_window", "nope"]}
    r = analyst.post("/api/v1/training-jobs/", body, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"
    with schema_context(alpha.tenant.schema_name):
        assert not FeatureSet.objects.filter(name="default-seq").exists()
        assert not TrainingJob.objects.filter(model_name="seq-api").exists()
    # ...and the family alone queues a job on default-seq
    r = analyst.post("/api/v1/training-jobs/", {**body, "families": ["mlp_window"]}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["params"]["feature_set"] == "default-seq@1"
    viewer_body = {**body, "model": "seq-viewer", "families": ["mlp_window"]}
    assert alpha.client(role="viewer").post("/api/v1/training-jobs/", viewer_body, format="json").status_code == 403
