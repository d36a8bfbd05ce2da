"""Risk over REST: per instrument (checked against pandas on the same bars) and for the paper portfolio."""

import numpy as np
import pytest
from django_tenants.utils import schema_context

from tests.conftest import error_code
from tests.riskcore.helpers import import_bars

pytestmark = pytest.mark.django_db


def test_instrument_risk_matches_the_bars(alpha):
    frame = import_bars(alpha, "RSK", 300, seed=3)
    bench = import_bars(alpha, "BNCH", 300, seed=4)
    r = alpha.client(scope="read").get("/api/v1/risk/RSK/?window=200&benchmark=BNCH&drawdown_points=50")
    assert r.status_code == 200, r.content
    body = r.json()
    last = frame.iloc[-200:]
    ret = last["close"].pct_change().dropna()
    assert body["window"]["bars"] == 200 and body["observations"] == 199 and body["timeframe"] == "1d"
    assert body["volatility"] == pytest.approx(ret.std() * np.sqrt(365), rel=1e-9)  # crypto: 365 days
    assert body["var"]["95"]["historical_var"] == pytest.approx(-ret.quantile(0.05), rel=1e-9)
    assert body["var"]["99"]["historical_cvar"] == pytest.approx(-ret[ret <= ret.quantile(0.01)].mean(), rel=1e-9)
    b = bench.iloc[-200:]["close"].pct_change().dropna()
    assert body["beta"] == pytest.approx(ret.cov(b) / b.var(), rel=1e-9)
    peak = last["close"].cummax()
    assert body["max_drawdown"] == pytest.approx(float((1 - last["close"] / peak).max()), rel=1e-9)
    assert body["liquidity"]["avg_dollar_volume"] == pytest.approx(float((last["close"] * last["volume"]).mean()))
    assert len(body["drawdown"]) >= 50 and min(p["drawdown"] for p in body["drawdown"]) <= 0
    assert "parametric" in body["method"]["var"]


def test_instrument_risk_bad_input(alpha):
    import_bars(alpha, "RSK", 20, seed=3)
    c = alpha.client(scope="read")
    r = c.get("/api/v1/risk/RSK/?window=5")
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    r = c.get("/api/v1/risk/RSK/")
    assert r.status_code == 400 and error_code(r) == "insufficient_bars"
    assert r.json()["error"]["details"]["bars"] == 20
    assert c.get("/api/v1/risk/RSK/?timeframe=7d").status_code == 400
    r = c.get("/api/v1/risk/NOPE/")
    assert r.status_code == 404 and error_code(r) == "not_found"


def test_instrument_risk_needs_read_scope_and_hides_other_tenants(alpha, beta):
    import_bars(alpha, "RSK", 60, seed=3)
    r = alpha.client(scope="trade").get("/api/v1/risk/RSK/")
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    assert alpha.client(role="viewer").get("/api/v1/risk/RSK/").status_code == 200
    r = beta.client().get("/api/v1/risk/RSK/")
    assert r.status_code == 404 and error_code(r) == "not_found"
    assert beta.client().get("/api/v1/risk/portfolio/").json()["positions"] == []


def test_portfolio_risk_from_ledger_positions(alpha):
    from intelligence.models import Position

    a = import_bars(alpha, "PA", 120, seed=5)
    b = import_bars(alpha, "PB", 120, seed=6)
    with schema_context(alpha.tenant.schema_name):
        Position.objects.create(symbol="PA", qty=2.0, last_price=float(a["close"].iloc[-1]))
        Position.objects.create(symbol="PB", qty=-1.0, last_price=float(b["close"].iloc[-1]))
        Position.objects.create(symbol="FLAT", qty=0.0)
    r = alpha.client(role="viewer").get("/api/v1/risk/portfolio/?window=100")
    assert r.status_code == 200, r.content
    body = r.json()
    assert [p["symbol"] for p in body["positions"]] == ["PA", "PB"]
    gross = 2 * a["close"].iloc[-1] + b["close"].iloc[-1]
    assert body["gross_exposure"] == pytest.approx(gross)
    assert body["net_exposure"] == pytest.approx(2 * a["close"].iloc[-1] - b["close"].iloc[-1])
    pnl = (2 * a["close"].iloc[-100:].diff() - b["close"].iloc[-100:].diff()).dropna()
    var95 = body["risk"]["var"]["95"]
    assert var95["historical_var_money"] == pytest.approx(-pnl.quantile(0.05), rel=1e-9)
    assert var95["historical_var"] == pytest.approx(-pnl.quantile(0.05) / gross, rel=1e-9)
    assert body["shared_bars"] == 100 and body["risk"]["max_drawdown"] >= 0
    r = alpha.client().get("/api/v1/risk/portfolio/?window=1")
    assert r.status_code == 400 and error_code(r) == "invalid_input"
