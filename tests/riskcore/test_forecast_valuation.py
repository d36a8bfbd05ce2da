"""Return forecast with intervals (coverage out of sample, next to a naive interval) and
relative valuation from posted fundamentals (worked by hand)."""

import numpy as np
import pytest
from django_tenants.utils import schema_context

from riskcore import valuation
from riskcore.models import Fundamentals
from tests.conftest import error_code
from tests.riskcore.helpers import import_bars

pytestmark = pytest.mark.django_db


def test_forecast_interval_and_honest_coverage(alpha):
    frame = import_bars(alpha, "FC", 600, seed=8)
    r = alpha.client(scope="read").get("/api/v1/forecast/FC/?level=0.9&horizon=1")
    assert r.status_code == 200, r.content
    body = r.json()
    lr = body["log_return"]
    assert lr["lower"] <= lr["median"] <= lr["upper"]
    assert body["price"]["lower"] == pytest.approx(frame["close"].iloc[-1] * np.exp(lr["lower"]))
    ev = body["evaluation"]
    # 600 bars - 20 warm-up - 1 without a next bar = 579 rows; 70 % fit, 30 % scored
    assert ev["train_rows"] == int(579 * 0.7) and ev["test_rows"] == 579 - int(579 * 0.7)
    for side in ("model", "naive"):
        assert 0.0 <= ev[side]["coverage"] <= 1.0 and ev[side]["mean_width"] > 0
    # on a random walk neither interval is far off its nominal 90 %
    assert abs(ev["model"]["coverage"] - 0.9) < 0.15 and abs(ev["naive"]["coverage"] - 0.9) < 0.15
    assert "quantile regression" in body["method"]


def test_forecast_errors(alpha, beta):
    import_bars(alpha, "FC", 60, seed=8)
    c = alpha.client()
    r = c.get("/api/v1/forecast/FC/")
    assert r.status_code == 400 and error_code(r) == "insufficient_bars"
    assert error_code(c.get("/api/v1/forecast/FC/?level=1.5")) == "invalid_input"
    r = alpha.client(scope="trade").get("/api/v1/forecast/FC/")
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    assert beta.client().get("/api/v1/forecast/FC/").status_code == 404


def test_relative_value_by_hand():
    # subject: price 10, 100 shares, earnings 50, book 200 -> cap 1000, P/E 20, P/B 5, EPS 0.5, BVPS 2
    s = {"price": 10.0, **valuation.multiples(price=10, shares=100, earnings=50, book=200, dividends=20)}
    assert (s["pe"], s["pb"], s["dividend_yield"]) == (20, 5, 0.02)
    peers = [
        {"pe": 10.0, "pb": 2.0}, {"pe": 14.0, "pb": 4.0}, {"pe": 30.0, "pb": 3.0}, {"pe": None, "pb": 1.0},
    ]  # fmt: skip
    out = valuation.relative_value(s, peers)
    # median P/E of 10, 14, 30 = 14 -> 0.5 x 14 = 7; median P/B of 2, 4, 3, 1 = 2.5 -> 2 x 2.5 = 5
    assert out["peer_median_pe"] == 14 and out["peer_median_pb"] == 2.5
    assert out["implied_value"] == {"pe": 7.0, "pb": 5.0} and out["fair_value"] == 6.0
    assert out["premium"] == pytest.approx(10 / 6 - 1)
    loss = {"price": 10.0, **valuation.multiples(price=10, shares=100, earnings=-5, book=200, dividends=0)}
    assert loss["pe"] is None and valuation.relative_value(loss, peers)["implied_value"] == {"pb": 5.0}


def _post(c, symbol, **kw):
    body = {"symbol": symbol, "sector": "tech", "shares_outstanding": 1000, "earnings": 5000, "book_value": 20000}
    return c.post("/api/v1/fundamentals/", {**body, **kw}, format="json")


def test_fundamentals_then_valuation_against_sector_peers(alpha):
    frames = {s: import_bars(alpha, s, 40, seed=i) for i, s in enumerate(("VA", "VB", "VC", "VD"))}
    c = alpha.client(role="analyst")
    r = _post(c, "VA")
    assert r.status_code == 201 and r.json()["created"] is True
    assert _post(c, "VA", earnings=4000).status_code == 200  # replaces
    _post(c, "VB", earnings=8000)
    _post(c, "VC", earnings=2000, book_value=10000)
    _post(c, "VD", sector="energy", earnings=1)  # another sector: not a peer
    r = alpha.client(role="viewer").get("/api/v1/valuation/VA/")
    assert r.status_code == 200, r.content
    body = r.json()
    price = {s: float(f["close"].iloc[-1]) for s, f in frames.items()}
    assert body["peer_basis"] == "sector" and sorted(p["symbol"] for p in body["peers"]) == ["VB", "VC"]
    pe = sorted([price["VB"] * 1000 / 8000, price["VC"] * 1000 / 2000])
    pb = sorted([price["VB"] * 1000 / 20000, price["VC"] * 1000 / 10000])
    fair = (4.0 * (pe[0] + pe[1]) / 2 + 20.0 * (pb[0] + pb[1]) / 2) / 2
    assert body["pe"] == pytest.approx(price["VA"] * 1000 / 4000)
    assert body["fair_value"] == pytest.approx(fair) and body["premium"] == pytest.approx(price["VA"] / fair - 1)
    assert "median" in body["method"]


def test_fundamentals_and_valuation_errors(alpha, beta):
    import_bars(alpha, "VA", 40)
    c = alpha.client(role="analyst")
    r = c.get("/api/v1/valuation/VA/")
    assert r.status_code == 404 and error_code(r) == "no_fundamentals"
    assert error_code(_post(c, "VA", shares_outstanding=0)) == "invalid_fundamentals"
    assert error_code(_post(c, "VA", earnings="lots")) == "invalid_input"
    assert error_code(_post(c, "NOPE")) == "not_found"
    with schema_context(alpha.tenant.schema_name):
        assert Fundamentals.objects.count() == 0
    _post(c, "VA")
    r = c.get("/api/v1/valuation/VA/")
    assert r.status_code == 400 and error_code(r) == "no_peers"
    r = _post(alpha.client(role="viewer"), "VA")
    assert r.status_code == 403 and error_code(r) == "insufficient_role"
    assert _post(beta.client(), "VA").status_code == 404
    assert beta.client().get("/api/v1/valuation/VA/").status_code == 404
