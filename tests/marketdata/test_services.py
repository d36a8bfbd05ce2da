"""Imports are all-or-nothing, overlap is explicit, and what is stored reads back exactly."""

import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from compliance.models import AuditRecord
from marketdata import selectors, services
from marketdata.models import Bar, Instrument
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table

pytestmark = pytest.mark.django_db


def _raw(frame):
    return read_table(as_csv(frame), "csv")


def _import(fx, frame, symbol="BTC-USD", timeframe="1d", **kw):
    with schema_context(fx.tenant.schema_name):
        return services.bars_import(tenant=fx.tenant, symbol=symbol, timeframe=timeframe, raw=_raw(frame), **kw)


def test_import_creates_instrument_and_reads_back_exactly(alpha):
    bars = generate_bars(400, seed=1)
    result = _import(alpha, bars, symbol="btc-usd")
    assert (result.symbol, result.rows, result.inserted, result.instrument_created) == ("BTC-USD", 400, 400, True)
    with schema_context(alpha.tenant.schema_name):
        inst = Instrument.objects.get(symbol="BTC-USD")
        assert inst.asset_class == "other" and inst.currency == "USD"  # defaults the user can edit
        stored = selectors.bars_frame(instrument=inst, timeframe="1d")
        rec = AuditRecord.objects.get(action="bars.imported")
    assert (stored.index == bars.index).all()
    np.testing.assert_allclose(stored.to_numpy(), bars[stored.columns].to_numpy(), rtol=1e-9)
    assert rec.details["rows"] == 400 and rec.details["on_conflict"] == "error"


def test_bad_rows_write_nothing_not_even_the_instrument(alpha):
    bars = generate_bars(50, seed=2)
    bars.iloc[10, bars.columns.get_loc("high")] = 0.0001  # high below open/close, and fine otherwise
    with pytest.raises(ApplicationError) as exc:
        _import(alpha, bars, symbol="BAD")
    assert exc.value.code == "invalid_data" and exc.value.details["error_count"] >= 1
    assert {"row": 11, "column": "high", "code": "high_below_open_close"}.items() <= exc.value.details["errors"][
        0
    ].items()
    with schema_context(alpha.tenant.schema_name):
        assert not Instrument.objects.filter(symbol="BAD").exists() and not Bar.objects.exists()


def test_overlap_is_explicit_error_skip_or_replace(alpha):
    bars = generate_bars(100, seed=3)
    _import(alpha, bars.iloc[:60])
    with pytest.raises(ApplicationError) as exc:
        _import(alpha, bars.iloc[40:])
    assert exc.value.code == "overlapping_bars" and exc.value.status == 409 and exc.value.details["overlap"] == 20
    result = _import(alpha, bars.iloc[40:], on_conflict="skip")
    assert (result.inserted, result.skipped) == (40, 20)
    changed = bars.iloc[50:55].copy()
    changed[["open", "high", "low", "close"]] *= 2
    result = _import(alpha, changed, on_conflict="replace")
    assert (result.inserted, result.replaced) == (0, 5)
    with schema_context(alpha.tenant.schema_name):
        stored = selectors.bars_frame(instrument=Instrument.objects.get(symbol="BTC-USD"), timeframe="1d")
    assert len(stored) == 100
    np.testing.assert_allclose(stored["close"].iloc[50:55], changed["close"], rtol=1e-12)
    np.testing.assert_allclose(stored["close"].iloc[56:], bars["close"].iloc[56:], rtol=1e-12)


def test_timeframes_are_separate_series(alpha):
    _import(alpha, generate_bars(30, seed=4), timeframe="1d")
    _import(alpha, generate_bars(30, seed=4, timeframe="1h"), timeframe="1h")
    with schema_context(alpha.tenant.schema_name):
        cov = selectors.coverage()
    assert [(c["timeframe"], c["bars"]) for c in next(iter(cov.values()))] == [("1h", 30), ("1d", 30)]


def test_tenants_never_see_each_others_bars(alpha, beta):
    _import(alpha, generate_bars(10, seed=5), symbol="ONLY-A")
    with schema_context(beta.tenant.schema_name):
        assert not Instrument.objects.filter(symbol="ONLY-A").exists()


def test_plan_caps_rows_per_import(beta, settings):
    beta.tenant.plan.limits = {**beta.tenant.plan.limits, "import_rows": 10}
    with pytest.raises(ApplicationError) as exc:
        _import(beta, generate_bars(11, seed=6))
    assert exc.value.details["errors"][0]["code"] == "too_many_rows"


def test_invalid_arguments():
    with pytest.raises(ApplicationError) as exc:
        services.symbol_clean("bad symbol!")
    assert exc.value.code == "invalid_symbol"


def test_statistics(alpha):
    bars = generate_bars(200, seed=7)
    _import(alpha, bars.drop(bars.index[50:53]))
    with schema_context(alpha.tenant.schema_name):
        stats = selectors.bars_statistics(instrument=Instrument.objects.get(symbol="BTC-USD"), timeframe="1d")
    assert (stats["rows"], stats["expected_bars"], stats["missing_bars"], stats["gap_count"]) == (197, 200, 3, 1)
    r = np.diff(np.log(bars.drop(bars.index[50:53])["close"].to_numpy()))
    assert stats["returns"]["std"] == pytest.approx(r.std(ddof=1))


def test_import_bars_command(alpha, tmp_path):
    path = tmp_path / "eth.csv"
    path.write_text(as_csv(generate_bars(120, seed=8)))
    out = io.StringIO()
    call_command("import_bars", tenant="alpha", symbol="ETH-USD", timeframe="1d", input=str(path), stdout=out)
    assert "ETH-USD 1d: 120 rows (120 inserted" in out.getvalue()
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1,-3\n")
    err = io.StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("import_bars", tenant="alpha", symbol="X", timeframe="1d", input=str(bad), stderr=err)
    assert exc.value.returncode == 2 and "negative_volume" in err.getvalue() and "row 1" in err.getvalue()
    with pytest.raises(CommandError, match="No active tenant"):
        call_command("import_bars", tenant="nope", symbol="X", timeframe="1d", input=str(path))


def test_deleting_an_instrument_deletes_its_bars(alpha):
    _import(alpha, generate_bars(20, seed=9), symbol="GONE")
    with schema_context(alpha.tenant.schema_name):
        inst = Instrument.objects.get(symbol="GONE")
        inst.delete()
        assert not Bar.objects.filter(instrument_id=inst.pk).exists()


def test_streamed_bars_go_in_once_and_broken_ones_are_skipped(alpha):
    good = {
        "symbol": "app",
        "timeframe": "1h",
        "ts": 1_700_002_800,
        "open": 10,
        "high": 11,
        "low": 9,
        "close": 10.5,
        "volume": 5,
    }
    broken = [
        {**good, "ts": good["ts"] + 3600, "high": 9.5},  # high below close
        {**good, "ts": good["ts"] + 60},  # not on the hour
        {**good, "ts": good["ts"] + 10800, "volume": float("nan")},
        {**good, "ts": good["ts"] + 14400, "timeframe": "2h"},
    ]
    with schema_context(alpha.tenant.schema_name):
        assert services.bars_append(tenant=alpha.tenant, bars=[good, *broken]) == 1
        assert services.bars_append(tenant=alpha.tenant, bars=[good]) == 0  # stored bars are kept
        instrument = Instrument.objects.get(symbol="APP")
        assert Bar.objects.filter(instrument=instrument).count() == 1 and instrument.bars_version == 2
