import numpy as np
import pytest
from django_tenants.utils import schema_context

from marketdata import selectors
from marketdata.samples import SAMPLES, sample_data_load
from marketdata.synthetic import generate_bars, generate_market

pytestmark = pytest.mark.django_db


def test_demo_samples_load_once_and_are_deterministic(alpha):
    loaded = sample_data_load(alpha.tenant)
    assert len(loaded) == len(SAMPLES)
    assert sample_data_load(alpha.tenant) == []  # idempotent
    with schema_context(alpha.tenant.schema_name):
        cov = {(c["timeframe"], c["bars"]) for covs in selectors.coverage().values() for c in covs}
    assert ("1h", 6000) in cov and ("1d", 1500) in cov


def test_generator_is_seeded_consistent_and_can_plant_a_signal():
    a, b = generate_bars(3000, seed=42), generate_bars(3000, seed=42)
    assert a.equals(b) and not a.equals(generate_bars(3000, seed=43))
    assert (a["high"] >= a[["open", "close"]].max(axis=1)).all() and (
        a["low"] <= a[["open", "close"]].min(axis=1)
    ).all()
    _, regimes = generate_market(3000, seed=42)
    assert (a["volume"] > 0).all() and set(regimes) == {"bull", "bear", "sideways"}
    r = np.diff(np.log(generate_bars(20000, seed=1, planted_signal=0.1)["close"].to_numpy()))
    agree = (np.sign(r[1:]) == np.sign(r[:-1])).mean()
    assert 0.57 < agree < 0.63  # the planted momentum edge: 0.5 + 0.1
    r0 = np.diff(np.log(generate_bars(20000, seed=1)["close"].to_numpy()))
    assert abs((np.sign(r0[1:]) == np.sign(r0[:-1])).mean() - 0.5) < 0.03  # none without it
