"""The demo tenant's model (make run): trained once on the sample data, deployed because it honestly
beats its baselines, kept on the next run."""

import pandas as pd
import pytest
from django_tenants.utils import schema_context

from marketdata import services as md_services
from marketdata.samples import SAMPLE_END, SAMPLES
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from models_registry.models import ModelAlias, ModelVersion
from models_registry.samples import DEMO_MODEL, DEMO_RL_MODEL, demo_model_ensure, demo_rl_ensure

pytestmark = pytest.mark.django_db


def test_demo_model_is_trained_once_and_deployed_only_with_an_edge(alpha):
    symbol, _, timeframe, n, seed, price, vol, signal = SAMPLES[0]
    assert (symbol, timeframe) == ("BTC-USD", "1d") and signal[0] > 0
    frame = generate_bars(
        n,
        timeframe="1d",
        seed=seed,
        start=SAMPLE_END - n * pd.Timedelta("1D"),
        start_price=price,
        annual_vol=vol,
        planted_signal=signal[0],
        planted_lag=signal[1],
    )
    with schema_context(alpha.tenant.schema_name):
        md_services.bars_import(
            tenant=alpha.tenant, symbol=symbol, timeframe="1d", raw=read_table(as_csv(frame), "csv")
        )
    message = demo_model_ensure(alpha.tenant)
    assert "deployed to production" in message, message
    with schema_context(alpha.tenant.schema_name):
        version = ModelAlias.objects.get(model__name=DEMO_MODEL, name="production").version
        report = version.report
        assert not version.no_edge
        assert report["oos"]["accuracy"] > report["significance"]["baseline_accuracy"]
        assert report["significance"]["p_value"] < 0.05 and report["trading"]["total_return"] > 0
    assert "kept from an earlier run" in demo_model_ensure(alpha.tenant)
    with schema_context(alpha.tenant.schema_name):
        assert ModelVersion.objects.filter(model__name=DEMO_MODEL).count() == 1
    # the demo's RL policy on the same series and features: out of sample it beats buy & hold and
    # flat, so it is deployed (and the rl agent votes, and the rl.* events flow, in make run)
    message = demo_rl_ensure(alpha.tenant)
    assert "deployed to production" in message, message
    with schema_context(alpha.tenant.schema_name):
        rl = ModelAlias.objects.get(model__name=DEMO_RL_MODEL, name="production").version
        assert rl.task == "rl" and not rl.no_edge and rl.feature_set.name == "momentum"
    assert "kept from an earlier run" in demo_rl_ensure(alpha.tenant)
