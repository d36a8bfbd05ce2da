"""The market-data and feature-set pages: import with row errors, lists, role checks."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from features.models import FeatureSet
from marketdata.models import Bar, Instrument
from marketdata.synthetic import as_csv, generate_bars
from tests.dashboard.support import HX, dashboard_client

pytestmark = pytest.mark.django_db


def test_import_from_the_page_then_it_is_listed(alpha):
    c = dashboard_client(alpha, "analyst")
    assert 'data-empty="instruments"' in c.get("/app/data/").content.decode()
    upload = SimpleUploadedFile("btc.csv", as_csv(generate_bars(90, seed=31)).encode())
    r = c.post("/app/data/", {"file": upload, "symbol": "BTC-USD", "timeframe": "1d", "on_conflict": "error"}, **HX)
    html = r.content.decode()
    assert r.status_code == 201 and "data-import-result" in html and "90 rows: 90 inserted" in html
    assert 'data-instrument="BTC-USD"' in html and "<polyline" in html


def test_bad_file_lists_row_errors_and_writes_nothing(alpha):
    c = dashboard_client(alpha, "admin")
    csv = "timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1,10\n2024-01-02,1,0.5,0.5,1,-1\n"
    upload = SimpleUploadedFile("bad.csv", csv.encode())
    r = c.post("/app/data/", {"file": upload, "symbol": "BAD", "timeframe": "1d", "on_conflict": "error"}, **HX)
    html = r.content.decode()
    assert r.status_code == 400 and 'data-import-error="invalid_data"' in html
    assert "high_below_open_close" in html and "negative_volume" in html and "Nothing was imported" in html
    with schema_context(alpha.tenant.schema_name):
        assert not Instrument.objects.exists() and not Bar.objects.exists()
    r = c.post("/app/data/", {"symbol": "X", "timeframe": "1d", "on_conflict": "error"}, **HX)  # no file
    assert r.status_code == 400 and 'data-field-errors="file"' in r.content.decode()


def test_viewer_sees_data_but_cannot_import(alpha):
    c = dashboard_client(alpha, "viewer")
    page = c.get("/app/data/").content.decode()
    assert 'data-form="import"' not in page and "Ask an analyst" in page
    upload = SimpleUploadedFile("b.csv", as_csv(generate_bars(5, seed=1)).encode())
    assert c.post("/app/data/", {"file": upload, "symbol": "X", "timeframe": "1d"}).status_code == 403
    with schema_context(alpha.tenant.schema_name):
        assert not Instrument.objects.exists()


def test_feature_set_editor(alpha):
    c = dashboard_client(alpha, "analyst")
    page = c.get("/app/features/").content.decode()
    assert 'data-feature-set="default@1"' in page and "rsi_14" in page
    r = c.post(
        "/app/features/", {"name": "swing", "spec": '{"features": [{"indicator": "ema", "params": {"length": 9}}]}'}
    )
    assert r.status_code == 302
    assert 'data-feature-set="swing@1"' in c.get("/app/features/").content.decode()
    r = c.post(
        "/app/features/", {"name": "swing", "spec": '{"features": [{"indicator": "ema", "params": {"length": -1}}]}'}
    )
    assert r.status_code == 400 and "features[0].params.length" in r.content.decode()
    r = c.post("/app/features/", {"name": "swing", "spec": "{not json"})
    assert r.status_code == 400 and "Not valid JSON" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        assert FeatureSet.objects.filter(name="swing").count() == 1


def test_viewer_cannot_create_feature_sets(alpha):
    c = dashboard_client(alpha, "viewer")
    assert 'data-form="feature-set"' not in c.get("/app/features/").content.decode()
    r = c.post("/app/features/", {"name": "v", "spec": '{"features": [{"indicator": "ema"}]}'})
    assert r.status_code == 403


def test_feature_preview_draws_the_set_over_price(alpha):
    from marketdata import services as md_services
    from marketdata.validation import read_table

    with schema_context(alpha.tenant.schema_name):
        md_services.bars_import(
            tenant=alpha.tenant, symbol="PV", timeframe="1d", raw=read_table(as_csv(generate_bars(300, seed=5)), "csv")
        )
    c = dashboard_client(alpha, "viewer")
    assert 'data-form="preview"' in c.get("/app/features/").content.decode()
    html = c.get("/app/features/preview/?ref=default&symbol=PV&timeframe=1d").content.decode()
    assert html.count("<polyline") == 1 + 3 + 6  # close, the three bands over price; six lines below
    assert "bb_upper_20_2" in html and "rsi_14" in html and "adx_14" in html
    html = c.get("/app/features/preview/?ref=default&symbol=PV&timeframe=1h").content.decode()
    assert "data-preview-error" in html and "no 1h bars" in html
    html = c.get("/app/features/preview/?ref=nope&symbol=PV&timeframe=1d").content.decode()
    assert "data-preview-error" in html
