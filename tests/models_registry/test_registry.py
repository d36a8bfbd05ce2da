"""The registry: sealed artifacts verified before load, one version per job, gated deploys,
rollback with history, retention that never prunes an aliased version, deterministic traffic split,
and predictions through an alias or a version."""

import numpy as np
import pytest
from django.test import override_settings
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from models_registry import serving
from models_registry.models import ModelVersion
from models_registry.services import registry
from tests.conftest import error_code
from tests.models_registry.factories import FEATURES, small_bundle, stored_version

pytestmark = pytest.mark.django_db


def test_artifacts_are_encrypted_and_verified_before_load(alpha):
    with schema_context(alpha.tenant.schema_name):
        v = stored_version()
        assert b"automl-bundle" not in bytes(v.artifact)  # not readable at rest
        x = np.array([[0.3, -1.0, 2.0]])
        np.testing.assert_allclose(serving.bundle_get(v).predict_proba(x), small_bundle().predict_proba(x))
        # a recorded hash that doesn't match the bytes: refused, never loaded
        serving._bundles.clear()
        ModelVersion.objects.filter(pk=v.pk).update(artifact_sha256="0" * 64)
        v.refresh_from_db()
        with pytest.raises(ApplicationError) as exc:
            serving.bundle_get(v)
        assert exc.value.code == "artifact_tampered"
        # ciphertext changed at rest: decryption fails
        blob = bytearray(bytes(v.artifact))
        blob[-1] ^= 1
        ModelVersion.objects.filter(pk=v.pk).update(artifact=bytes(blob))
        v.refresh_from_db()
        with pytest.raises(ApplicationError) as exc:
            serving.bundle_get(v)
        assert exc.value.code == "undecryptable"


def test_a_job_makes_at_most_one_version(alpha):
    with schema_context(alpha.tenant.schema_name):
        v = stored_version()
        again = registry.version_create(
            model=v.model,
            training_job=v.training_job,
            artifact=b"ignored",
            task="binary",
            target={},
            feature_set=v.feature_set,
            feature_names=FEATURES,
            symbol="TEST",
            timeframe="1d",
            train_start=None,
            train_end=None,
            rows_used=1,
            data_fingerprint="",
            params={},
            report={},
            reference={},
            no_edge=True,
        )
        assert again.pk == v.pk and ModelVersion.objects.count() == 1
        assert v.feature_set.locked_at is not None  # a version's feature set can't be deleted any more


def test_production_is_gated_on_edge_and_rollback_restores_with_history(alpha, beta):
    with schema_context(alpha.tenant.schema_name):
        stored_version("gated", no_edge=False, seed=1)
        stored_version("gated", no_edge=True, seed=2)
        stored_version("gated", no_edge=False, seed=3)
    admin, analyst = alpha.client(role="admin"), alpha.client(role="analyst")
    url = "/api/v1/models/gated/"
    assert analyst.post(url + "deploy/", {"version": 1}, format="json").status_code == 403
    assert beta.client(role="owner").post(url + "deploy/", {"version": 1}, format="json").status_code == 404
    r = admin.post(url + "deploy/", {"version": 1, "reason": "first"}, format="json")
    assert r.status_code == 200 and r.json()["aliases"] == {"production": 1}
    r = admin.post(url + "deploy/", {"version": 2}, format="json")
    assert r.status_code == 409 and error_code(r) == "deploy_gate_failed"
    assert admin.post(url + "deploy/", {"version": 2, "alias": "challenger"}, format="json").status_code == 200
    assert admin.post(url + "deploy/", {"version": 3, "reason": "better"}, format="json").json()["aliases"] == {
        "production": 3,
        "challenger": 2,
    }
    r = admin.post(url + "rollback/", {"reason": "v3 misbehaves live"}, format="json")
    assert r.status_code == 200 and r.json()["aliases"]["production"] == 1
    detail = alpha.client(role="viewer").get(url).json()
    assert [(h["alias"], h["action"], h["from_version"], h["to_version"]) for h in detail["history"]] == [
        ("production", "rollback", 3, 1),
        ("production", "deploy", 1, 3),
        ("challenger", "deploy", None, 2),
        ("production", "deploy", None, 1),
    ]
    assert (
        detail["history"][0]["reason"] == "v3 misbehaves live" and detail["history"][0]["actor"] == "admin@alpha.test"
    )
    # a looser policy is the admins' explicit choice
    assert analyst.patch(url, {"deploy_policy": {"gate": "none"}}, format="json").status_code == 403
    assert admin.patch(url, {"deploy_policy": {"gate": "maybe"}}, format="json").status_code == 400
    assert admin.patch(url, {"deploy_policy": {"gate": "none"}}, format="json").status_code == 200
    assert admin.post(url + "deploy/", {"version": 2}, format="json").status_code == 200


def test_seed_accuracy_thresholds_are_a_setting_not_a_default(alpha):
    with schema_context(alpha.tenant.schema_name):
        stored_version("thr", accuracy=0.56)
    admin = alpha.client(role="admin")
    admin.patch("/api/v1/models/thr/", {"deploy_policy": {"gate": "thresholds", "min_accuracy": 0.8}}, format="json")
    r = admin.post("/api/v1/models/thr/deploy/", {"version": 1}, format="json")
    assert r.status_code == 409 and r.json()["error"]["details"]["min_accuracy"] == 0.8


@override_settings(MODEL_VERSION_LIMIT=2)
def test_retention_prunes_old_artifacts_but_never_an_aliased_version(alpha):
    with schema_context(alpha.tenant.schema_name):
        v1 = stored_version("keep", seed=1)
        registry.model_deploy(model=v1.model, version=v1)
        for seed in (2, 3, 4):
            stored_version("keep", seed=seed)
        kept = dict(ModelVersion.objects.filter(model=v1.model).values_list("version", "pruned_at"))
        assert kept[1] is None and kept[3] is None and kept[4] is None and kept[2] is not None
        with pytest.raises(ApplicationError) as exc:
            serving.bundle_get(ModelVersion.objects.get(model=v1.model, version=2))
        assert exc.value.code == "version_pruned"


def test_traffic_split_is_deterministic_per_request_key(alpha):
    with schema_context(alpha.tenant.schema_name):
        v1, v2 = stored_version("ab", seed=1), stored_version("ab", seed=2)
        registry.model_deploy(model=v1.model, version=v1)
        registry.model_deploy(model=v1.model, version=v2, alias="challenger")
        registry.model_settings_update(model=v1.model, traffic={"challenger_percent": 30})
        arms = [serving.version_resolve(model=v1.model, request_key=f"user-{i}").version for i in range(2000)]
        share = arms.count(2) / len(arms)
        assert 0.27 < share < 0.33
        assert {serving.version_resolve(model=v1.model, request_key="user-7").version for _ in range(5)} == {arms[7]}
        # an open circuit takes the challenger out of rotation
        registry.circuit_set(version=v2, state="open")
        v1.model.refresh_from_db()
        assert {serving.version_resolve(model=v1.model, request_key=f"user-{i}").version for i in range(200)} == {1}


def test_predict_by_alias_or_version(alpha, beta):
    with schema_context(alpha.tenant.schema_name):
        v = stored_version("pred")
        registry.model_deploy(model=v.model, version=v)
    c = alpha.client(role="viewer")
    rows = [{"f1": 0.3, "f2": -1.0, "f3": 2.0}, {"f1": -2.0, "f2": 0.1, "f3": 0.0}]
    r = c.post("/api/v1/models/pred/predict/", {"rows": rows}, format="json")
    assert r.status_code == 200, r.content
    batch = r.json()["predictions"]
    expected = small_bundle().predict_proba(np.array([[row[f] for f in FEATURES] for row in rows]))
    assert [p["probabilities"]["up"] for p in batch] == pytest.approx(expected[:, 1].tolist(), rel=1e-9)
    one = c.post("/api/v1/models/pred/predict/", {"rows": rows[:1], "version": 1}, format="json").json()
    assert one["predictions"][0]["probabilities"]["up"] == pytest.approx(expected[0, 1], rel=1e-9)
    assert one["predictions"][0]["prediction"] == ("up" if expected[0, 1] > 0.5 else "down")
    bad = c.post("/api/v1/models/pred/predict/", {"rows": [{"f1": 1.0}]}, format="json")
    assert bad.status_code == 400 and error_code(bad) == "missing_features"
    nan = c.post("/api/v1/models/pred/predict/", {"rows": [{"f1": None, "f2": 1, "f3": 1}]}, format="json")
    assert nan.status_code == 400 and error_code(nan) == "invalid_features"
    r = c.post("/api/v1/models/pred/predict/", {"rows": rows, "alias": "challenger"}, format="json")
    assert r.status_code == 404 and error_code(r) == "alias_not_found"
    assert beta.client().post("/api/v1/models/pred/predict/", {"rows": rows}, format="json").status_code == 404
    assert c.get("/api/v1/models/").json()[0]["aliases"] == {"production": 1}
