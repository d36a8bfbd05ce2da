"""Portfolio optimisation over REST: allocation suggestions across a tenant's instruments."""

import numpy as np
import pytest
from django_tenants.utils import schema_context

from intelligence.agents.portfolio import allocate
from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from tests.conftest import error_code

pytestmark = pytest.mark.django_db
URL = "/api/v1/portfolio/allocation/"


@pytest.fixture
def three(alpha):
    """A calm, a middling and a wild instrument over the same 300 days."""
    with schema_context(alpha.tenant.schema_name):
        for symbol, vol, seed in (("CALM", 0.1, 1), ("MID", 0.3, 2), ("WILD", 0.9, 3)):
            bars = generate_bars(300, seed=seed, annual_vol=vol)
            md_services.bars_import(
                tenant=alpha.tenant, symbol=symbol, timeframe="1d", raw=read_table(as_csv(bars), "csv")
            )


def test_risk_parity_gives_the_calm_instrument_the_most_weight_and_equal_risk(alpha, three):
    r = alpha.client(scope="read").get(URL + "?method=risk_parity&lookback=250")
    assert r.status_code == 200, r.content
    body = r.json()
    w = body["weights"]
    assert set(w) == {"CALM", "MID", "WILD"} and sum(w.values()) == pytest.approx(1, abs=1e-5)
    assert w["CALM"] > w["MID"] > w["WILD"] > 0
    assert body["observations"] == 250
    rc = body["risk_contribution"]
    assert max(rc.values()) - min(rc.values()) < 0.02  # equal risk contribution
    # the same numbers as the library function on the same returns
    with schema_context(alpha.tenant.schema_name):
        from marketdata import selectors as md

        closes = {
            s: md.bars_frame(instrument=md.instrument_get(symbol=s), timeframe="1d", limit=251)["close"] for s in w
        }
    import pandas as pd

    returns = np.log(pd.DataFrame(closes)).diff().dropna()
    expected = allocate(returns.to_numpy(), list(returns.columns), "risk_parity")
    assert w == pytest.approx({s: round(x, 6) for s, x in expected.items()}, abs=1e-6)


def test_other_methods_and_a_subset(alpha, three):
    mv = alpha.client().get(URL + "?method=mean_variance&symbols=calm,wild").json()
    assert set(mv["weights"]) == {"CALM", "WILD"} and sum(mv["weights"].values()) == pytest.approx(1, abs=1e-5)
    iv = alpha.client().get(URL + "?method=inverse_volatility").json()["weights"]
    assert iv["CALM"] > iv["WILD"]


@pytest.mark.parametrize(
    "query,code",
    [
        ("method=magic", "invalid_method"),
        ("timeframe=2h", "invalid_timeframe"),
        ("lookback=5", "invalid_lookback"),
        ("lookback=abc", "invalid_lookback"),
        ("symbols=CALM", "not_enough_data"),  # one instrument is no portfolio
        ("timeframe=1h", "not_enough_data"),  # no hourly bars
    ],
)
def test_bad_input_says_what_to_do(alpha, three, query, code):
    r = alpha.client().get(f"{URL}?{query}")
    assert r.status_code == 400 and error_code(r) == code


def test_plans_without_the_portfolio_agent_are_refused_and_tenants_see_only_their_own(alpha, beta, three):
    r = beta.client().get(URL)
    assert r.status_code == 403 and error_code(r) == "agent_not_in_plan"
    # a pro tenant with no instruments of its own sees none of alpha's
    from tenants import resolution
    from tenants.models import Plan, Tenant

    upgraded = Tenant.objects.get(pk=beta.tenant.pk)  # not the session fixture's object: it outlives this test
    upgraded.plan = Plan.objects.get(code="pro")
    upgraded.save(update_fields=["plan"])

    resolution.reset_local()
    r = beta.client().get(URL)
    assert (
        r.status_code == 400
        and error_code(r) == "not_enough_data"
        and r.json()["error"]["details"]["instruments"] == []
    )
