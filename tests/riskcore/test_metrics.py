"""Golden figures worked by hand on a five-bar series (closes 100, 110, 99, 99, 108.9):
returns +10 %, -10 %, 0 %, +10 %; mean 0.025; deviations 0.075, -0.125, -0.025, 0.075, squares
summing to 0.0275, sample variance 0.0275 / 3 = 0.0091667, sd 0.0957427."""

import math

import numpy as np
import pytest

from riskcore import metrics

CLOSE = np.array([100.0, 110.0, 99.0, 99.0, 108.9])
VOLUME = np.array([10.0, 10.0, 20.0, 10.0, 10.0])
SD = math.sqrt(0.0275 / 3)


def test_returns_and_volatility():
    r = metrics.simple_returns(CLOSE)
    assert r == pytest.approx([0.1, -0.1, 0.0, 0.1])
    assert SD == pytest.approx(0.0957427, abs=1e-7)
    # 0.0957427 x sqrt(252)
    assert metrics.volatility(r, periods=252) == pytest.approx(1.519868, abs=1e-6)
    assert metrics.periods_per_year(86400, asset_class="equity") == 252
    assert metrics.periods_per_year(3600, asset_class="crypto") == 365 * 24


def test_historical_var_and_cvar():
    r = metrics.simple_returns(CLOSE)
    # sorted -0.1, 0, 0.1, 0.1; the 5 % quantile sits at position 3 x 0.05 = 0.15 between -0.1 and 0:
    # -0.1 + 0.15 x 0.1 = -0.085; only -0.1 is at or below it
    var95, cvar95 = metrics.historical_var(r, 0.95)
    assert var95 == pytest.approx(0.085) and cvar95 == pytest.approx(0.1)
    # 1 %: position 0.03 -> -0.1 + 0.003 = -0.097
    var99, cvar99 = metrics.historical_var(r, 0.99)
    assert var99 == pytest.approx(0.097) and cvar99 == pytest.approx(0.1)


def test_parametric_var_and_cvar():
    r = metrics.simple_returns(CLOSE)
    # z95 = -1.644854; VaR = -(0.025 - 1.644854 x 0.0957427) = 0.132483
    # phi(1.644854) = 0.103136; CVaR = -(0.025 - 0.0957427 x 0.103136 / 0.05) = 0.172490
    var95, cvar95 = metrics.parametric_var(r, 0.95)
    assert var95 == pytest.approx(0.132483, abs=1e-6) and cvar95 == pytest.approx(0.172490, abs=1e-6)
    # z99 = -2.326348, phi = 0.026652: VaR 0.197731, CVaR -(0.025 - 0.0957427 x 2.665214) = 0.230175
    var99, cvar99 = metrics.parametric_var(r, 0.99)
    assert var99 == pytest.approx(0.197731, abs=1e-6) and cvar99 == pytest.approx(0.230175, abs=2e-6)
    assert cvar95 > var95 and var99 > var95


def test_beta_drawdown_and_liquidity():
    r = metrics.simple_returns(CLOSE)
    bench = np.array([0.05, -0.05, 0.0, 0.05])  # r is exactly twice the benchmark
    assert metrics.beta(r, bench) == pytest.approx(2.0)
    assert metrics.beta(r, np.zeros(4)) is None  # a flat benchmark has no beta
    # peak 110, trough 99: 11 / 110
    assert metrics.max_drawdown(CLOSE) == pytest.approx(0.1)
    assert metrics.drawdown_series(CLOSE) == pytest.approx([0, 0, -0.1, -0.1, -0.01])
    liq = metrics.liquidity(CLOSE, VOLUME)
    # dollar volume 1000, 1100, 1980, 990, 1089 -> mean 1231.8
    assert liq["avg_dollar_volume"] == pytest.approx(1231.8)
    # (0.1/1100 + 0.1/1980 + 0/990 + 0.1/1089) / 4 x 1e6 = (90.90909 + 50.50505 + 0 + 91.82736) / 4 = 58.31038
    assert liq["amihud_illiquidity"] == pytest.approx(58.31038, abs=1e-5)


def test_risk_figures_bundle_and_short_series():
    f = metrics.risk_figures(CLOSE, VOLUME, periods=252, benchmark_returns=np.array([0.05, -0.05, 0.0, 0.05]))
    assert f["observations"] == 4 and f["beta"] == pytest.approx(2.0)
    assert f["var"]["95"]["historical_var"] == pytest.approx(0.085)
    assert f["var"]["99"]["parametric_cvar"] == pytest.approx(0.230175, abs=2e-6)
    short = metrics.risk_figures(np.array([100.0]), np.array([1.0]), periods=252)
    assert short["volatility"] is None and short["var"]["95"]["historical_var"] is None
