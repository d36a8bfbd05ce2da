"""Feature sets in a tenant: versioned, immutable once used, referenced as name@version; and the
calculate endpoint, whose values equal the batch engine on the same bars."""

import time

import numpy as np
import pandas as pd
import pytest
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from features import selectors, services
from features.engine import compute_batch
from features.models import FeatureSet
from features.spec import DEFAULT_SPEC, FeatureSpec
from marketdata import selectors as md_selectors
from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from tests.conftest import error_code

pytestmark = pytest.mark.django_db

SPEC_A = {"features": [{"indicator": "rsi", "params": {"length": 7}, "lags": [1]}]}
SPEC_B = {"features": [{"indicator": "rsi", "params": {"length": 7}}, {"indicator": "ema", "params": {"length": 20}}]}


def test_builtin_default_matches_the_code(alpha):
    import importlib

    frozen = importlib.import_module("features.migrations.0002_default_feature_set")
    with schema_context(alpha.tenant.schema_name):
        fs = selectors.feature_set_get(ref="default")
    assert fs.ref == "default@1" and fs.columns == DEFAULT_SPEC.columns() == frozen.COLUMNS
    assert fs.spec_hash == DEFAULT_SPEC.hash() == FeatureSpec.from_json(frozen.SPEC).hash()
    assert fs.warmup == DEFAULT_SPEC.warmup("1d")


def test_versions_are_created_per_change_and_idempotent(alpha):
    with schema_context(alpha.tenant.schema_name):
        a, created = services.feature_set_create(name="momentum", spec=SPEC_A)
        assert (a.ref, created, a.columns) == ("momentum@1", True, ["rsi_7", "rsi_7_lag1"])
        again, created = services.feature_set_create(name="momentum", spec=SPEC_A)
        assert (again.pk, created) == (a.pk, False)
        b, _ = services.feature_set_create(name="momentum", spec=SPEC_B)
        assert b.ref == "momentum@2" and selectors.feature_set_get(ref="momentum").pk == b.pk
        diff = selectors.feature_set_diff(a=a, b=b)
        assert diff["columns_added"] == ["ema_20"] and diff["columns_removed"] == ["rsi_7_lag1"]
        assert [f["indicator"] for f in diff["features_added"]] == ["ema"]


def test_invalid_specs_name_the_path(alpha):
    with schema_context(alpha.tenant.schema_name):
        with pytest.raises(ApplicationError) as exc:
            services.feature_set_create(name="bad", spec={"features": [{"indicator": "rsi", "params": {"length": 0}}]})
        assert exc.value.code == "invalid_spec"
        assert exc.value.details["errors"][0]["path"] == "features[0].params.length"
        with pytest.raises(ApplicationError) as exc:
            services.feature_set_create(name="Bad Name", spec=SPEC_A)
        assert exc.value.code == "invalid_name"
        assert not FeatureSet.objects.filter(name__in=["bad", "bad name"]).exists()


def test_locked_versions_and_the_builtin_cannot_be_deleted(alpha):
    with schema_context(alpha.tenant.schema_name):
        fs, _ = services.feature_set_create(name="used", spec=SPEC_A)
        services.feature_set_lock(feature_set=fs)
        with pytest.raises(ApplicationError) as exc:
            services.feature_set_delete(feature_set=fs)
        assert exc.value.code == "feature_set_locked"
        with pytest.raises(ApplicationError) as exc:
            services.feature_set_delete(feature_set=selectors.feature_set_get(ref="default@1"))
        assert exc.value.code == "feature_set_builtin"


def test_api_create_get_diff_delete(alpha, beta):
    c = alpha.client(role="analyst")
    r = c.post("/api/v1/feature-sets/", {"name": "trend", "spec": SPEC_A}, format="json")
    assert r.status_code == 201 and r.json()["ref"] == "trend@1"
    assert c.post("/api/v1/feature-sets/", {"name": "trend", "spec": SPEC_A}, format="json").status_code == 200
    assert c.post("/api/v1/feature-sets/", {"name": "trend", "spec": SPEC_B}, format="json").json()["ref"] == "trend@2"
    assert c.get("/api/v1/feature-sets/trend@1/").json()["columns"] == ["rsi_7", "rsi_7_lag1"]
    assert c.get("/api/v1/feature-sets/trend/").json()["version"] == 2
    assert [f["ref"] for f in c.get("/api/v1/feature-sets/?latest=true").json()] == ["default@1", "trend@2"]
    assert c.get("/api/v1/feature-sets/trend/diff/?from=1&to=2").json()["columns_added"] == ["ema_20"]
    r = c.post("/api/v1/feature-sets/", {"name": "x", "spec": {"features": [{"indicator": "nope"}]}}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_spec"
    assert beta.client().get("/api/v1/feature-sets/trend@1/").status_code == 404  # another tenant's
    assert (
        alpha.client(role="viewer")
        .post("/api/v1/feature-sets/", {"name": "v", "spec": SPEC_A}, format="json")
        .status_code
        == 403
    )
    assert c.delete("/api/v1/feature-sets/trend@1/").status_code == 204
    assert c.get("/api/v1/feature-sets/trend@1/").status_code == 404
    assert c.get("/api/v1/feature-sets/trend@x/").status_code == 400


def test_indicator_catalogue(alpha):
    names = {i["name"] for i in alpha.client(scope="read").get("/api/v1/indicators/").json()}
    assert {"rsi", "macd", "bbands", "atr", "adx", "sma", "ema", "stoch", "obv", "vwap", "cdl"} <= names


def test_calculate_for_stored_bars_equals_the_batch_engine(alpha):
    frame = generate_bars(400, seed=21)
    with schema_context(alpha.tenant.schema_name):
        md_services.bars_import(
            tenant=alpha.tenant, symbol="CALC", timeframe="1d", raw=read_table(as_csv(frame), "csv")
        )
    expected = compute_batch(frame, DEFAULT_SPEC, "1d")
    c = alpha.client(scope="read")
    r = c.post("/api/v1/features/calculate/", {"symbol": "CALC", "timeframe": "1d", "limit": 50}, format="json")
    assert r.status_code == 200
    body = r.json()
    assert body["columns"] == DEFAULT_SPEC.columns() and len(body["rows"]) == 50
    got = np.array([[row[col] for col in body["columns"]] for row in body["rows"]])
    np.testing.assert_allclose(got, expected.iloc[-50:].to_numpy(), rtol=1e-12)
    # from a start date: the same values as over the full history (no truncated warm-up)
    start = frame.index[100]
    r = c.post(
        "/api/v1/features/calculate/",
        {"symbol": "CALC", "timeframe": "1d", "start": start.isoformat(), "limit": 3},
        format="json",
    )
    rows = r.json()["rows"]
    assert rows[0]["ts"] == start.isoformat()
    assert rows[0]["rsi_14"] == pytest.approx(expected["rsi_14"].iloc[100], rel=1e-12)


def test_calculate_for_posted_bars_with_warmup_nulls(alpha):
    frame = generate_bars(60, seed=22)
    bars = [{"timestamp": ts.isoformat(), **row} for ts, row in frame.to_dict("index").items()]
    r = alpha.client().post(
        "/api/v1/features/calculate/", {"timeframe": "1d", "bars": bars, "limit": 60}, format="json"
    )
    assert r.status_code == 200
    rows = r.json()["rows"]
    assert rows[0]["rsi_14"] is None and rows[-1]["adx_14"] is not None
    assert sum(row["macd_12_26_9"] is None for row in rows) == 33
    bars[5]["high"] = -1
    r = alpha.client().post("/api/v1/features/calculate/", {"timeframe": "1d", "bars": bars}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_data"
    r = alpha.client().post("/api/v1/features/calculate/", {"timeframe": "1d"}, format="json")
    assert r.status_code == 400


def test_calculate_up_to_an_end_date_sees_no_later_bar(alpha):
    frame = generate_bars(300, seed=24)
    with schema_context(alpha.tenant.schema_name):
        md_services.bars_import(tenant=alpha.tenant, symbol="END", timeframe="1d", raw=read_table(as_csv(frame), "csv"))
    end = frame.index[200]
    r = alpha.client(scope="read").post(
        "/api/v1/features/calculate/",
        {"symbol": "END", "timeframe": "1d", "end": end.isoformat(), "limit": 5},
        format="json",
    )
    rows = r.json()["rows"]
    assert [row["ts"] for row in rows] == [ts.isoformat() for ts in frame.index[196:201]]
    truncated = compute_batch(frame.iloc[:201], DEFAULT_SPEC, "1d")  # as if the later bars did not exist
    assert rows[-1]["macd_hist_12_26_9"] == pytest.approx(truncated["macd_hist_12_26_9"].iloc[-1], rel=1e-12)


def test_cached_features_follow_every_change_of_the_bars(alpha):
    # given features computed (and cached) for stored bars
    frame = generate_bars(120, seed=25)
    c = alpha.client(scope="read")
    body = {"symbol": "CHG", "timeframe": "1d", "limit": 1}

    def last_close_feature():
        return c.post("/api/v1/features/calculate/", body, format="json").json()["rows"]

    with schema_context(alpha.tenant.schema_name):
        md_services.bars_import(tenant=alpha.tenant, symbol="CHG", timeframe="1d", raw=read_table(as_csv(frame), "csv"))
    before = last_close_feature()
    assert before[0]["ts"] == frame.index[-1].isoformat()
    # when the last bar is replaced with a different close
    changed = frame.iloc[-1:].copy()
    changed[["open", "high", "low", "close"]] *= 1.1
    with schema_context(alpha.tenant.schema_name):
        md_services.bars_import(
            tenant=alpha.tenant,
            symbol="CHG",
            timeframe="1d",
            raw=read_table(as_csv(changed), "csv"),
            on_conflict="replace",
        )
    # then the answer is computed from the new bars, not served from the cache
    after = last_close_feature()
    expected = compute_batch(pd.concat([frame.iloc[:-1], changed]), DEFAULT_SPEC, "1d")
    assert after[0]["rsi_14"] == pytest.approx(expected["rsi_14"].iloc[-1], rel=1e-12)
    assert after[0]["rsi_14"] != pytest.approx(before[0]["rsi_14"], rel=1e-6)
    # and after the bars are deleted there is nothing to compute from
    with schema_context(alpha.tenant.schema_name):
        md_services.bars_delete(instrument=md_selectors.instrument_get(symbol="CHG"), timeframe="1d")
    assert last_close_feature() == []


def test_posted_json_must_be_json(alpha):
    c = alpha.client()
    r = c.post("/api/v1/features/calculate/", '{"timeframe": "1d", "bars": [', content_type="application/json")
    assert r.status_code == 400 and error_code(r) == "malformed_request"
    r = c.post("/api/v1/features/calculate/", '{"timeframe": "1d", "x": NaN}', content_type="application/json")
    assert r.status_code == 400 and error_code(r) == "malformed_request"


def test_resolved_references_are_cached_briefly_and_never_across_tenants(alpha, beta, monkeypatch):
    from features import cache

    c = alpha.client()
    body = {"feature_set": "fast", "timeframe": "1d", "bars": _posted_bars(60), "limit": 1}
    c.post("/api/v1/feature-sets/", {"name": "fast", "spec": SPEC_A}, format="json")
    assert c.post("/api/v1/features/calculate/", body, format="json").json()["feature_set"] == "fast@1"
    # a version created through the service (this process) is seen at once
    c.post("/api/v1/feature-sets/", {"name": "fast", "spec": SPEC_B}, format="json")
    assert c.post("/api/v1/features/calculate/", body, format="json").json()["feature_set"] == "fast@2"
    # one created by another process (no local invalidation) is seen once the TTL has passed
    with schema_context(alpha.tenant.schema_name):
        v2 = FeatureSet.objects.get(name="fast", version=2)
        FeatureSet.objects.create(
            name="fast", version=3, spec=v2.spec, spec_hash=v2.spec_hash, columns=v2.columns, warmup=v2.warmup
        )
    assert c.post("/api/v1/features/calculate/", body, format="json").json()["feature_set"] == "fast@2"
    later = cache.REF_TTL + 0.5
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + later)
    assert c.post("/api/v1/features/calculate/", body, format="json").json()["feature_set"] == "fast@3"
    # the other tenant has no "fast", whatever this process resolved for alpha
    r = beta.client().post("/api/v1/features/calculate/", body, format="json")
    assert r.status_code == 404


def _posted_bars(n, seed=22):
    frame = generate_bars(n, seed=seed)
    return [{"timestamp": ts.isoformat(), **row} for ts, row in frame.to_dict("index").items()]
