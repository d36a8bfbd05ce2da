"""Market data over REST: upload or post bars, validate without writing, read ranges and stats."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from marketdata.models import Bar, Instrument
from marketdata.synthetic import as_csv, generate_bars
from tests.conftest import error_code

pytestmark = pytest.mark.django_db


def _upload(frame, name="bars.csv"):
    return SimpleUploadedFile(name, as_csv(frame).encode(), content_type="text/csv")


def _json_bars(frame):
    return [{"timestamp": ts.isoformat(), **{k: float(v) for k, v in row.items()}} for ts, row in frame.iterrows()]


def test_upload_csv_then_read_bars_and_statistics(alpha):
    c = alpha.client(role="analyst")
    frame = generate_bars(300, seed=11)
    r = c.post(
        "/api/v1/data/import/", {"symbol": "SOL-USD", "timeframe": "1d", "file": _upload(frame)}, format="multipart"
    )
    assert r.status_code == 201, r.content
    assert r.json()["inserted"] == 300 and r.json()["instrument_created"] is True
    inst = c.get("/api/v1/instruments/").json()
    assert inst[0]["symbol"] == "SOL-USD" and inst[0]["coverage"][0]["bars"] == 300
    iid = inst[0]["id"]
    bars = c.get(f"/api/v1/instruments/{iid}/bars/?timeframe=1d&limit=5").json()
    assert bars["count"] == 5 and bars["bars"][-1]["close"] == pytest.approx(frame["close"].iloc[-1], rel=1e-12)
    stats = c.get(f"/api/v1/instruments/{iid}/statistics/?timeframe=1d").json()
    assert stats["rows"] == 300 and stats["missing_bars"] == 0 and "p99" in stats["returns"]["percentiles"]


def test_parquet_upload(alpha, tmp_path):
    frame = generate_bars(40, seed=12)
    path = tmp_path / "b.parquet"
    frame.reset_index().rename(columns={"ts": "timestamp"}).to_parquet(path)
    upload = SimpleUploadedFile("b.parquet", path.read_bytes())
    r = alpha.client().post(
        "/api/v1/data/import/", {"symbol": "PQ", "timeframe": "1d", "file": upload}, format="multipart"
    )
    assert r.status_code == 201 and r.json()["rows"] == 40


def test_json_import_and_overlap_modes(alpha):
    c = alpha.client()
    frame = generate_bars(20, seed=13)
    body = {"symbol": "AAPL", "timeframe": "1d", "bars": _json_bars(frame), "asset_class": "equity"}
    assert c.post("/api/v1/data/import/", body, format="json").status_code == 201
    r = c.post("/api/v1/data/import/", body, format="json")
    assert (
        r.status_code == 409 and error_code(r) == "overlapping_bars" and r.json()["error"]["details"]["overlap"] == 20
    )
    r = c.post("/api/v1/data/import/", {**body, "on_conflict": "skip"}, format="json")
    assert r.status_code == 201 and r.json()["skipped"] == 20
    with schema_context(alpha.tenant.schema_name):
        assert Instrument.objects.get(symbol="AAPL").asset_class == "equity"


def test_bad_file_returns_all_errors_and_writes_nothing(alpha):
    csv = (
        "timestamp,open,high,low,close,volume\n"
        "2024-01-01,10,11,9,10,100\n"
        "2024-01-02,10,9,9,10,100\n"  # high below open/close
        "2024-01-02,10,11,9,10,-1\n"  # duplicate and negative volume
    )
    upload = SimpleUploadedFile("bad.csv", csv.encode())
    r = alpha.client().post(
        "/api/v1/data/import/", {"symbol": "BAD", "timeframe": "1d", "file": upload}, format="multipart"
    )
    assert r.status_code == 400 and error_code(r) == "invalid_data"
    codes = {(e["row"], e["code"]) for e in r.json()["error"]["details"]["errors"]}
    assert codes == {(2, "high_below_open_close"), (3, "duplicate_timestamp"), (3, "negative_volume")}
    with schema_context(alpha.tenant.schema_name):
        assert not Instrument.objects.exists() and not Bar.objects.exists()


def test_validate_reports_without_writing(alpha):
    frame = generate_bars(10, seed=14)
    r = alpha.client(scope="read").post(
        "/api/v1/data/validate/", {"timeframe": "1d", "bars": _json_bars(frame)}, format="json"
    )
    assert r.status_code == 200 and r.json()["valid"] is True and r.json()["rows"] == 10
    bad = _json_bars(frame)
    bad[3]["close"] = "n/a"
    r = alpha.client(scope="read").post("/api/v1/data/validate/", {"timeframe": "1d", "bars": bad}, format="json")
    assert r.json()["valid"] is False and r.json()["errors"][0] == {
        "row": 4,
        "column": "close",
        "code": "invalid_number",
        "message": "'close' is not a number.",
    }
    with schema_context(alpha.tenant.schema_name):
        assert not Bar.objects.exists()


@pytest.mark.parametrize(
    "body, code",
    [
        ({"symbol": "X", "timeframe": "1d"}, "invalid_input"),  # neither file nor bars
        ({"symbol": "X", "timeframe": "2d", "bars": [{"a": 1}]}, "invalid_input"),
        ({"symbol": "no spaces!", "timeframe": "1d", "bars": [{"timestamp": "2024-01-01"}]}, "invalid_symbol"),
    ],
)
def test_import_bad_requests(alpha, body, code):
    r = alpha.client().post("/api/v1/data/import/", body, format="json")
    assert r.status_code == 400 and error_code(r) == code


def test_file_over_the_plan_size_is_413(beta):
    from tenants import resolution
    from tenants.models import Plan

    plan = Plan.objects.get(code="free")
    Plan.objects.filter(pk=plan.pk).update(limits={**plan.limits, "upload_mb": 0})
    resolution.reset_local()
    upload = SimpleUploadedFile("b.csv", as_csv(generate_bars(5, seed=1)).encode())
    r = beta.client().post(
        "/api/v1/data/import/", {"symbol": "X", "timeframe": "1d", "file": upload}, format="multipart"
    )
    assert r.status_code == 413 and error_code(r) == "file_too_large"


def test_viewer_cannot_import_or_edit_but_can_read(alpha):
    r = alpha.client(role="viewer").post(
        "/api/v1/data/import/", {"symbol": "X", "timeframe": "1d", "bars": []}, format="json"
    )
    assert r.status_code == 403 and error_code(r) == "insufficient_role"
    assert alpha.client(role="viewer").get("/api/v1/instruments/").status_code == 200


def test_instrument_edit_and_other_tenant_404(alpha, beta):
    c = alpha.client(role="analyst")
    iid = c.post("/api/v1/instruments/", {"symbol": "eurusd", "asset_class": "fx"}, format="json").json()["id"]
    r = c.patch(f"/api/v1/instruments/{iid}/", {"exchange": "LMAX", "tick_size": "0.00001"}, format="json")
    assert r.status_code == 200 and r.json()["exchange"] == "LMAX" and r.json()["symbol"] == "EURUSD"
    assert c.post("/api/v1/instruments/", {"symbol": "EURUSD"}, format="json").status_code == 409
    assert beta.client().get(f"/api/v1/instruments/{iid}/").status_code == 404
    r = c.get(f"/api/v1/instruments/{iid}/statistics/?timeframe=9m")
    assert r.status_code == 400 and error_code(r) == "invalid_timeframe"
