"""Backtests over REST: validated before anything is written, run as a job with progress,
results read back (stats, equity curve, paged trades); roles and tenants enforced."""

import pytest
from django_tenants.utils import schema_context

from backtesting.engine import BrokerConfig
from backtesting.models import BacktestRun, BacktestTrade
from backtesting.services import backtest_execute, backtest_run
from marketdata import selectors as md_selectors
from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from tests.conftest import error_code

pytestmark = pytest.mark.django_db
URL = "/api/v1/backtests/"


@pytest.fixture
def bars(alpha):
    with schema_context(alpha.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(600, seed=8)), "csv")
        md_services.bars_import(tenant=alpha.tenant, symbol="BKT", timeframe="1d", raw=raw)
    return "BKT"


def _runs(fx) -> int:
    with schema_context(fx.tenant.schema_name):
        return BacktestRun.objects.count()


def test_request_run_and_read_a_backtest(alpha, bars, usage_redis):
    body = {"strategy": "sma_cross", "symbol": "bkt", "params": {"fast": 5, "slow": 30},
            "broker": {"commission": 0.001, "cash": 50_000, "slippage_atr": 0.1}}  # fmt: skip
    r = alpha.client(role="analyst").post(URL, body, format="json")
    assert r.status_code == 201, r.content
    queued = r.json()
    assert queued["state"] == "queued" and queued["timeframe"] == "1d" and queued["bars"] == 600
    assert queued["params"] == {"fast": 5, "slow": 30} and queued["broker"]["commission"] == 0.001
    with schema_context(alpha.tenant.schema_name):
        assert backtest_execute(run_id=queued["id"]) == "succeeded"
        assert backtest_execute(run_id=queued["id"]) == "succeeded"  # redelivered: left as it is
        stored = md_selectors.bars_frame(instrument=md_selectors.instrument_get(symbol="BKT"), timeframe="1d")
    viewer = alpha.client(role="viewer")
    done = viewer.get(f"{URL}{queued['id']}/").json()
    assert done["state"] == "succeeded" and done["percent"] == 100
    # the job's figures are the engine's on the same bars
    broker = BrokerConfig(commission=0.001, cash=50_000, slippage_atr=0.1)
    same = backtest_run(stored, strategy="sma_cross", params={"fast": 5, "slow": 30}, broker=broker)
    assert done["stats"]["equity_final"] == pytest.approx(same.result.equity_final)
    frictionless = backtest_run(stored, strategy="sma_cross", params={"fast": 5, "slow": 30},
                                broker=BrokerConfig(commission=0.001, cash=50_000))  # fmt: skip
    assert same.result.equity_final < frictionless.result.equity_final  # slippage costs on every fill
    assert done["stats"]["trades"] == len(same.result.trades) > 3
    assert "buy_and_hold_return_pct" in done["stats"] and done["stats"]["monte_carlo"]["runs"] == 1000
    assert done["equity"][0][1] == 50_000 and done["equity"][-1][1] == pytest.approx(same.result.equity_final)
    page = viewer.get(f"{URL}{queued['id']}/trades/?offset=1&limit=2").json()
    assert page["count"] == len(same.result.trades) and [t["n"] for t in page["results"]] == [2, 3]
    assert page["results"][0]["entry_price"] == pytest.approx(float(same.result.trades["entry_price"].iloc[1]))
    listed = viewer.get(URL + "?strategy=sma_cross").json()
    assert [x["id"] for x in listed["results"]] == [queued["id"]]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"strategy": "sma_cross", "symbol": "NOPE"}, "not_found"),
        ({"strategy": "nope", "symbol": "BKT"}, "invalid_input"),
        ({"strategy": "sma_cross", "symbol": "BKT", "params": {"fast": 50, "slow": 20}}, "invalid_param"),
        ({"strategy": "sma_cross", "symbol": "BKT", "params": {"speed": 3}}, "unknown_param"),
        ({"strategy": "sma_cross", "symbol": "BKT", "params": {"fast": 5, "slow": 900}}, "too_few_bars"),
        ({"strategy": "sma_cross", "symbol": "BKT", "broker": {"commission": 0.5}}, "invalid_broker"),
        ({"strategy": "sma_cross", "symbol": "BKT", "broker": {"sizing": "risk"}}, "invalid_broker"),
        ({"strategy": "sma_cross", "symbol": "BKT", "broker": {"slippage_atr": 9}}, "invalid_broker"),
        ({"strategy": "sma_cross", "symbol": "BKT", "start": "2035-01-01T00:00:00Z"}, "no_bars"),
        (
            {"strategy": "sma_cross", "symbol": "BKT", "start": "2021-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"},
            "invalid_range",
        ),  # fmt: skip
    ],
)
def test_bad_requests_say_what_is_wrong_and_create_nothing(alpha, bars, usage_redis, body, code):
    r = alpha.client().post(URL, body, format="json")
    assert 400 <= r.status_code < 500 and error_code(r) == code, r.content
    assert _runs(alpha) == 0


def test_roles_and_tenants(alpha, beta, bars, usage_redis):
    body = {"strategy": "ema_cross", "symbol": "BKT"}
    assert alpha.client(role="viewer").post(URL, body, format="json").status_code == 403
    assert _runs(alpha) == 0
    run_id = alpha.client().post(URL, body, format="json").json()["id"]
    for path in (f"{URL}{run_id}/", f"{URL}{run_id}/trades/"):
        r = beta.client().get(path)
        assert r.status_code == 404 and run_id not in r.content.decode()
    assert beta.client().get(URL).json()["results"] == []
    assert beta.client().post(URL, body, format="json").status_code == 404  # beta has no BKT


def test_a_run_whose_data_went_away_fails_with_a_reason(alpha, bars, usage_redis):
    run_id = alpha.client().post(URL, {"strategy": "sma_cross", "symbol": "BKT"}, format="json").json()["id"]
    with schema_context(alpha.tenant.schema_name):
        BacktestRun.objects.filter(pk=run_id).update(symbol="GONE")
        assert backtest_execute(run_id=run_id) == "failed"
        run = BacktestRun.objects.get(pk=run_id)
        assert run.state == "failed" and "GONE" in run.error and not BacktestTrade.objects.filter(run=run).exists()


def _version(name: str):
    """A stored logistic version over the default feature set (what training would leave)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from features.selectors import feature_set_get
    from models_registry.ml.artifacts import ModelBundle
    from models_registry.services.registry import version_from_bundle

    fs = feature_set_get(ref="default")
    columns = list(fs.columns)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, len(columns)))
    fitted = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(X, (X[:, 0] > 0).astype(int))
    bundle = ModelBundle(members=[fitted], weights=[1.0], task="binary", classes=["down", "up"], feature_names=columns)
    report = {"oos": {"accuracy": 0.5}, "baselines": {}, "no_edge": True}
    return version_from_bundle(
        model_name=name,
        bundle=bundle,
        feature_set=fs,
        symbol="BKT",
        timeframe="1d",
        report=report,
        params={"family": "logistic", "C": 1.0},
        rows_used=200,
        no_edge=True,
    )


def test_a_model_version_backtested_walk_forward(alpha, bars, usage_redis):
    with schema_context(alpha.tenant.schema_name):
        version = _version("wfm")
    body = {"strategy": "model", "symbol": "BKT", "params": {"model": "wfm", "window": 200, "step": 50}}
    r = alpha.client().post(URL, body, format="json")
    assert r.status_code == 201, r.content
    run = r.json()
    assert run["params"]["model"] == version.ref and run["params"]["window"] == 200
    with schema_context(alpha.tenant.schema_name):
        assert backtest_execute(run_id=run["id"]) == "succeeded", BacktestRun.objects.get(pk=run["id"]).error
    done = alpha.client().get(f"{URL}{run['id']}/").json()
    wf = done["stats"]["walk_forward"]
    assert wf["model"] == version.ref and wf["family"] == "logistic" and wf["segments"] >= 5
    assert wf["predictions"] > 200 and 0 <= wf["hit_rate"] <= 1 and wf["base_rate"] >= 0.5
    assert wf["edge"] is False  # random bars: the model must not claim an edge
    assert done["stats"]["first_tradable_bar"] == wf["first_predicted_bar"] >= 200
    for params, code in (
        ({"model": "nope"}, "not_found"),
        ({"model": "wfm", "window": 5000}, "too_few_bars"),
        ({"model": "wfm", "lookahead": 1}, "unknown_param"),
        ({"model": "wfm@9"}, "not_found"),
    ):
        r = alpha.client().post(URL, {**body, "params": params}, format="json")
        assert error_code(r) == code, (params, r.content)
    assert _runs(alpha) == 1


def test_a_sweep_runs_as_a_job_and_reports_its_ranking_heatmap_and_holdout(alpha, bars, usage_redis):
    body = {"strategy": "sma_cross", "symbol": "BKT", "grid": {"fast": [5, 10], "slow": [20, 40, 60]},
            "metric": "return_pct"}  # fmt: skip
    r = alpha.client().post(URL, body, format="json")
    assert r.status_code == 201, r.content
    run = r.json()
    assert run["grid"] == body["grid"] and run["metric"] == "return_pct"
    with schema_context(alpha.tenant.schema_name):
        assert backtest_execute(run_id=run["id"]) == "succeeded"
    report = alpha.client(role="viewer").get(f"{URL}{run['id']}/").json()["stats"]
    assert report["tested"] == 6 and len(report["ranking"]) == 6
    assert report["heatmap"]["x_values"] == [5, 10] and report["heatmap"]["y_values"] == [20, 40, 60]
    assert report["holdout"]["bars"] == 600 - int(600 * 0.7) and "inflated" in report["warning"]
    for bad, code in (
        ({"grid": {"fast": [50], "slow": [20]}}, "invalid_grid"),
        ({"grid": {"speed": [1]}}, "unknown_param"),
        ({"metric": "luck"}, "invalid_input"),
        ({"grid": {"fast": [5], "slow": [590]}}, "invalid_grid"),
    ):
        r = alpha.client().post(URL, {**body, **bad}, format="json")
        assert error_code(r) == code, (bad, r.content)
    assert _runs(alpha) == 1


def test_cancel_a_queued_or_running_backtest_and_compare_finished_ones(alpha, beta, bars, usage_redis):
    c = alpha.client()
    ids = [c.post(URL, {"strategy": s, "symbol": "BKT"}, format="json").json()["id"] for s in ("sma_cross", "macd")]
    queued = c.post(URL, {"strategy": "ema_cross", "symbol": "BKT"}, format="json").json()["id"]
    assert alpha.client(role="viewer").post(f"{URL}{queued}/cancel/").status_code == 403
    r = c.post(f"{URL}{queued}/cancel/")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert error_code(c.post(f"{URL}{queued}/cancel/")) == "job_finished"
    assert beta.client().post(f"{URL}{ids[0]}/cancel/").status_code == 404
    with schema_context(alpha.tenant.schema_name):
        assert backtest_execute(run_id=queued) == "cancelled"  # a worker picking it up later runs nothing
        BacktestRun.objects.filter(pk=ids[1]).update(state="running", cancel_requested=True)
        BacktestRun.objects.filter(pk=ids[1]).update(state="queued")  # as if requested while it ran
        assert backtest_execute(run_id=ids[1]) == "cancelled"
        assert not BacktestTrade.objects.filter(run_id=ids[1]).exists()
        assert backtest_execute(run_id=ids[0]) == "succeeded"
    assert error_code(c.get(f"{URL}compare/?ids={ids[0]},{ids[1]}")) == "not_comparable"
    with schema_context(alpha.tenant.schema_name):
        BacktestRun.objects.filter(pk=ids[1]).update(state="queued", cancel_requested=False)
        assert backtest_execute(run_id=ids[1]) == "succeeded"
    out = c.get(f"{URL}compare/?ids={ids[0]},{ids[1]}").json()
    assert [r["id"] for r in out["runs"]] == ids and out["best"]["return_pct"] in ids
    best = max(out["runs"], key=lambda r: r["return_pct"])
    assert out["best"]["return_pct"] == best["id"]
    assert error_code(c.get(f"{URL}compare/?ids={ids[0]}")) == "invalid_input"
    assert error_code(c.get(f"{URL}compare/?ids=x,y")) == "invalid_input"
    r = beta.client().get(f"{URL}compare/?ids={ids[0]},{ids[1]}")
    assert r.status_code == 404 and ids[0] not in r.content.decode()


def test_rules_over_a_feature_set(alpha, bars, usage_redis):
    from backtesting.engine import FLAT, KEEP, LONG
    from backtesting.rules import rules_signal
    from features.engine import compute_batch
    from features.selectors import feature_set_get, feature_set_spec

    rules = {"long": [["rsi_14", "<", 35]], "exit": [["rsi_14", "crosses_above", 55]]}
    r = alpha.client().post(URL, {"strategy": "rules", "symbol": "BKT", "params": rules}, format="json")
    assert r.status_code == 201, r.content
    run = r.json()
    assert run["params"]["feature_set"].startswith("default@") and run["params"]["match"] == "all"
    with schema_context(alpha.tenant.schema_name):
        assert backtest_execute(run_id=run["id"]) == "succeeded"
        stored = md_selectors.bars_frame(instrument=md_selectors.instrument_get(symbol="BKT"), timeframe="1d")
        features = compute_batch(stored, feature_set_spec(feature_set_get(ref="default")), "1d", direct=True)
    target, start = rules_signal(stored, features, {**rules, "match": "all"})
    rsi = features["rsi_14"].to_numpy()
    assert (target[start:][rsi[start:] < 35] == LONG).all()  # the rule, bar by bar
    assert set(target[start:][(rsi[start:] >= 35)]) <= {KEEP, FLAT}
    done = alpha.client().get(f"{URL}{run['id']}/").json()
    assert done["stats"]["trades"] >= 1 and done["stats"]["first_tradable_bar"] == start
    for params, code in (
        ({"long": [["rsi_99", "<", 30]]}, "invalid_rules"),
        ({"long": [["rsi_14", "<<", 30]]}, "invalid_rules"),
        ({"exit": [["rsi_14", ">", 50]]}, "invalid_rules"),  # nothing ever opens a position
        ({"long": [["rsi_14", "<", 30]], "feature_set": "nope"}, "not_found"),
    ):
        r = alpha.client().post(URL, {"strategy": "rules", "symbol": "BKT", "params": params}, format="json")
        assert error_code(r) == code, (params, r.content)
    assert _runs(alpha) == 1


def test_the_live_consensus_configuration_backtested_bar_by_bar(alpha, bars, usage_redis):
    r = alpha.client().post(URL, {"strategy": "consensus", "symbol": "BKT"}, format="json")
    assert r.status_code == 201, r.content
    run_id = r.json()["id"]
    with schema_context(alpha.tenant.schema_name):
        from intelligence.models import Decision, EngineState, Position

        before = (Decision.objects.count(), Position.objects.count(), EngineState.objects.count())
        assert backtest_execute(run_id=run_id) == "succeeded", BacktestRun.objects.get(pk=run_id).error
        # a backtest decides nothing live: no decision, position or learned state is written
        assert (Decision.objects.count(), Position.objects.count(), EngineState.objects.count()) == before
    done = alpha.client().get(f"{URL}{run_id}/").json()
    c = done["stats"]["consensus"]
    assert c["flow"] == "default@0" and "technical" in c["agents"]
    assert sum(c["decisions"].values()) == 600 - done["stats"]["first_tradable_bar"]
    assert set(c["final_weights"]) and c["model"] is None  # no production model for BKT
    assert c["actionable_accuracy"] is None or 0 <= c["actionable_accuracy"] <= 1
    again = alpha.client().post(URL, {"strategy": "consensus", "symbol": "BKT"}, format="json").json()["id"]
    with schema_context(alpha.tenant.schema_name):
        backtest_execute(run_id=again)
    # deterministic: the same bars give the same decisions and the same equity
    twice = alpha.client().get(f"{URL}{again}/").json()["stats"]
    assert twice["consensus"]["decisions"] == c["decisions"] and twice["equity_final"] == done["stats"]["equity_final"]
    r = alpha.client().post(URL, {"strategy": "consensus", "symbol": "BKT", "params": {"speed": 1}}, format="json")
    assert error_code(r) == "unknown_param"


def test_a_consensus_backtest_runs_the_flow_of_the_environment_asked_for(alpha, bars, usage_redis):
    # given staging runs a flow of its own while prod keeps the default
    admin = alpha.client(role="admin")
    body = {"name": "candidate", "config": {"min_confidence": 0.5, "min_agreement": 0.3}, "environment": "staging"}
    assert admin.post("/api/v1/flows/", body, format="json").status_code == 201
    runs = {}
    for env in ("staging", "prod"):
        r = alpha.client().post(
            URL, {"strategy": "consensus", "symbol": "BKT", "params": {"environment": env, "use_model": False}},
            format="json",
        )  # fmt: skip
        assert r.status_code == 201 and r.json()["params"]["environment"] == env, r.content
        with schema_context(alpha.tenant.schema_name):
            assert backtest_execute(run_id=r.json()["id"]) == "succeeded"
        runs[env] = alpha.client().get(f"{URL}{r.json()['id']}/").json()["stats"]["consensus"]
    assert runs["staging"]["flow"] == "candidate@1" and runs["prod"]["flow"] == "default@0"
    # an environment that does not exist: 404, nothing queued
    before = _runs(alpha)
    r = alpha.client().post(URL, {"strategy": "consensus", "symbol": "BKT", "params": {"environment": "qa"}},
                            format="json")  # fmt: skip
    assert r.status_code == 404 and error_code(r) == "unknown_environment" and _runs(alpha) == before


def test_an_optuna_sweep_over_rest(alpha, bars, usage_redis):
    body = {"strategy": "sma_cross", "symbol": "BKT", "grid": {"fast": [2, 20], "slow": [25, 80]},
            "search": "optuna", "n_trials": 12}  # fmt: skip
    r = alpha.client().post(URL, body, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["search"] == "optuna" and r.json()["n_trials"] == 12
    with schema_context(alpha.tenant.schema_name):
        assert backtest_execute(run_id=r.json()["id"]) == "succeeded"
    report = alpha.client().get(f"{URL}{r.json()['id']}/").json()["stats"]
    assert report["search"] == "optuna" and report["combinations"] == 12 and report["ranking"]
    bad = alpha.client().post(URL, {**body, "grid": {"fast": [20, 2]}}, format="json")
    assert error_code(bad) == "invalid_grid" and _runs(alpha) == 1
