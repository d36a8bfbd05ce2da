"""The training and workflow forms list every AutoML family, the sequence model (mlp_window) among
them; ticking it trains on the feature set with lags added, and a workflow with it trains, validates
and backtests the network like any other version."""

import pytest
from django_tenants.utils import schema_context

from models_registry.ml.families import FAMILIES, TABULAR
from models_registry.models import TrainingJob
from orchestration.models import StepState, Workflow
from tests.dashboard.support import dashboard_client
from tests.orchestration.support import drive, market, states

pytestmark = pytest.mark.django_db

TRAIN = {"model": "seq-page", "symbol": "FLOW", "timeframe": "1d", "feature_set": "lagged", "target": "direction",
         "horizon": "1", "dead_band": "0", "n_trials": "2"}  # fmt: skip
FLOW = {"model": "seq-flow", "symbol": "FLOW", "timeframe": "1d", "feature_set": "lagged", "n_trials": "2",
        "auto_promote": "on"}  # fmt: skip


def test_the_training_form_offers_every_family_and_starts_a_sequence_job(alpha):
    market(alpha.tenant)
    analyst = dashboard_client(alpha, "analyst")
    page = analyst.get("/app/models/").content.decode()
    for family in FAMILIES:
        assert f'value="{family}"' in page
    r = analyst.post("/app/models/", {**TRAIN, "families": ["nope"]})  # not a choice: nothing starts
    assert r.status_code == 400 and 'data-field-errors="families"' in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        assert not TrainingJob.objects.exists()
    viewer = dashboard_client(alpha, "viewer")
    assert viewer.post("/app/models/", {**TRAIN, "families": ["mlp_window"]}).status_code == 403
    r = analyst.post("/app/models/", {**TRAIN, "families": ["mlp_window"]})
    assert r.status_code == 302
    r = analyst.post("/app/models/", {**TRAIN, "model": "tab-page"})  # none ticked: the tabular defaults
    assert r.status_code == 302
    with schema_context(alpha.tenant.schema_name):
        seq = TrainingJob.objects.get(model_name="seq-page")
        tab = TrainingJob.objects.get(model_name="tab-page")
    assert seq.params["families"] == ["mlp_window"] and seq.params["feature_set"] == "lagged-seq@1"
    assert tab.params["families"] == list(TABULAR) and tab.params["feature_set"] == "lagged@1"


def test_a_workflow_with_the_sequence_model_trains_validates_and_backtests_it(alpha):
    market(alpha.tenant)
    analyst = dashboard_client(alpha, "analyst")
    assert 'value="mlp_window"' in analyst.get("/app/workflows/").content.decode()
    r = analyst.post("/app/workflows/", {**FLOW, "families": ["mlp_window"]})
    assert r.status_code == 302, r.content.decode()[:2000]
    with schema_context(alpha.tenant.schema_name):
        wf = Workflow.objects.get()
        assert wf.params["training"]["families"] == ["mlp_window"]
        assert wf.params["training"]["feature_set"] == "lagged-seq@1"
        wf = drive(wf.pk, stop_before="compare")
        got = states(wf)
        assert got["train"] == got["validate"] == got["backtest"] == StepState.SUCCEEDED, (got, wf.error)
        from backtesting.models import BacktestRun

        run = BacktestRun.objects.get(pk=wf.steps.get(name="backtest").result["backtest_id"])
        walk = (run.stats or {}).get("walk_forward") or {}
        assert walk.get("family") == "mlp_window" and walk.get("segments", 0) >= 1, run.stats
