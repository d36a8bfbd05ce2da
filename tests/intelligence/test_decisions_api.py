"""Decisions over REST: from stored bars (traded on the paper ledger, explained, published) or
posted bars (a what-if), with the production model's vote; scopes, roles and tenants enforced."""

import pytest
from django_tenants.utils import schema_context

from intelligence.models import Decision, Fill, Position
from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from tests.conftest import error_code

pytestmark = pytest.mark.django_db
URL = "/api/v1/decisions/"


@pytest.fixture
def stored(alpha):
    with schema_context(alpha.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(400, seed=51)), "csv")
        md_services.bars_import(tenant=alpha.tenant, symbol="DEC", timeframe="1d", raw=raw)


@pytest.fixture
def forced(monkeypatch):
    """The consensus's decision with these fields replaced (empty: as decided)."""
    from dataclasses import replace

    from intelligence.consensus import ConsensusEngine

    decide = ConsensusEngine.decide
    fields: dict = {}

    def forcing(self, *args, **kwargs):
        d = decide(self, *args, **kwargs)
        return replace(d, **fields) if fields else d

    monkeypatch.setattr(ConsensusEngine, "decide", forcing)
    return fields


def test_decide_on_stored_bars_explains_itself_and_can_be_read_back(alpha, stored, usage_redis):
    r = alpha.client(scope="trade").post(URL, {"symbol": "dec"}, format="json")
    assert r.status_code == 201, r.content
    d = r.json()
    assert d["symbol"] == "DEC" and d["timeframe"] == "1d" and d["action"] in ("BUY", "SELL", "HOLD")
    assert 0 <= d["confidence"] <= 1 and d["latency_ms"] > 0 and d["explanation"]
    agents = {v["agent"] for v in d["votes"]}
    assert {"technical", "trend", "risk"} <= agents
    assert d["model_version"] is None  # no production model for DEC: the ML agent abstains
    again = alpha.client(scope="trade").post(URL, {"symbol": "DEC"}, format="json").json()
    assert again["id"] > d["id"]  # ids only increase
    listed = alpha.client(scope="read").get(URL + f"?after={d['id']}").json()
    assert [x["id"] for x in listed] == [again["id"]]
    assert alpha.client().get(f"{URL}{d['id']}/").json()["id"] == d["id"]
    status = alpha.client().get("/api/v1/ensemble-status/").json()
    assert status["flow"] == "default@0" and "technical" in status["agents"]


def test_actionable_decisions_trade_on_paper_posted_bars_do_not(alpha, stored, usage_redis):
    c = alpha.client(scope="trade")
    for _ in range(3):
        c.post(URL, {"symbol": "DEC"}, format="json")
    bars = [{"timestamp": ts.isoformat(), **row} for ts, row in generate_bars(300, seed=52).to_dict("index").items()]
    r = c.post(URL, {"symbol": "WHATIF", "timeframe": "1d", "bars": bars}, format="json")
    assert r.status_code == 201, r.content
    with schema_context(alpha.tenant.schema_name):
        traded = Decision.objects.filter(symbol="DEC").exclude(action="HOLD").exclude(size=0).count()
        assert Fill.objects.filter(symbol="DEC").count() <= traded
        assert not Fill.objects.filter(symbol="WHATIF").exists()
    positions = alpha.client(scope="read").get("/api/v1/positions/").json()
    assert all(p["symbol"] != "WHATIF" for p in positions)


def test_a_hold_on_a_position_that_moved_meanwhile_is_booked_once_on_the_moved_one(
    alpha, stored, usage_redis, monkeypatch, forced
):
    """Another request moves the position between this one's read and its write: the
    one-statement write's compare-and-set misses, and the decision is booked under the row lock,
    against the position as it now is."""
    from intelligence import ledger, selectors

    read = selectors.instrument_with_position

    def raced(**kwargs):
        instrument, position = read(**kwargs)
        Position.objects.update_or_create(symbol="DEC", defaults={"qty": 3.0, "avg_price": 50.0, "last_price": 50.0})
        return instrument, position

    misses = []
    insert = ledger.decision_insert_applied

    def counted(*args):
        ok = insert(*args)
        misses.append(not ok)
        return ok

    forced.update(action="HOLD", size=0.0)  # a HOLD takes the one-statement path (actionable: the broker's)
    monkeypatch.setattr(selectors, "instrument_with_position", raced)
    monkeypatch.setattr("intelligence.services.decision_insert_applied", counted)
    r = alpha.client(scope="trade").post(URL, {"symbol": "DEC"}, format="json")
    assert r.status_code == 201, r.content
    assert misses == [True]
    d = r.json()
    with schema_context(alpha.tenant.schema_name):
        assert Decision.objects.filter(symbol="DEC").count() == 1
        position = Position.objects.get(symbol="DEC")
        assert not Fill.objects.filter(decision_id=d["id"]).exists()
        assert position.qty == 3.0 and position.last_price != 50.0  # the moved position, marked to the close


def test_an_actionable_decision_is_executed_by_the_paper_broker_and_reported_as_trade_events(
    alpha, stored, usage_redis, forced, django_capture_on_commit_callbacks
):
    """Over REST as in the stream: a BUY is an order filled by the paper broker (against the
    close, moved by half the spread and the simulated slippage) and is published as
    trade.executed + position.opened; a flat-going SELL closes the position; a HOLD trades nothing."""
    import json

    from eventbus import bus
    from tests.intelligence.helpers import clear_streams

    schema = alpha.tenant.schema_name
    clear_streams(schema)
    c = alpha.client(scope="trade")

    def events(name):
        return [json.loads(f[b"e"])["data"] for _, f in bus.client().xrange(bus.stream_key(name, schema))]

    forced.update(action="BUY", size=0.5, confidence=0.9)
    with django_capture_on_commit_callbacks(execute=True):
        buy = c.post(URL, {"symbol": "DEC"}, format="json").json()
    assert buy["action"] == "BUY"
    with schema_context(schema):
        fill = Fill.objects.get(decision_id=buy["id"])
        close = Position.objects.get(symbol="DEC").last_price
        assert fill.qty > 0 and fill.price > close  # a buyer pays the spread
        assert Position.objects.get(symbol="DEC").qty == pytest.approx(fill.qty)
    trades = events("trade.executed")
    assert [(t["side"], t["decision_id"], t["broker"]) for t in trades] == [("BUY", buy["id"], "paper")]
    assert [o["decision_id"] for o in events("position.opened")] == [buy["id"]]

    forced.update(action="HOLD", size=0.0)
    with django_capture_on_commit_callbacks(execute=True):
        hold = c.post(URL, {"symbol": "DEC"}, format="json").json()
    assert hold["action"] == "HOLD" and len(events("trade.executed")) == 1
    with schema_context(schema):
        assert not Fill.objects.filter(decision_id=hold["id"]).exists()

    forced.update(action="SELL", size=0.0)
    with django_capture_on_commit_callbacks(execute=True):
        sell = c.post(URL, {"symbol": "DEC"}, format="json").json()
    with schema_context(schema):
        assert Position.objects.get(symbol="DEC").qty == pytest.approx(0.0, abs=1e-9)
    assert [t["side"] for t in events("trade.executed")] == ["BUY", "SELL"]
    assert [x["decision_id"] for x in events("position.closed")] == [sell["id"]]
    clear_streams(schema)


def test_bad_requests_roles_scopes_and_tenants(alpha, beta, stored, usage_redis):
    c = alpha.client(scope="trade")
    r = c.post(URL, {"symbol": "NOPE"}, format="json")
    assert r.status_code == 404
    r = c.post(URL, {"symbol": "X", "bars": [{"timestamp": "2024-01-01", "open": 1}]}, format="json")
    assert r.status_code == 400 and error_code(r) == "timeframe_required"
    r = c.post(URL, {"symbol": "X", "timeframe": "1d", "bars": [{"timestamp": "2024-01-01", "open": 1}]}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_data"
    with schema_context(alpha.tenant.schema_name):
        assert not Decision.objects.exists()
    assert alpha.client(scope="read").post(URL, {"symbol": "DEC"}, format="json").status_code == 403
    assert alpha.client(role="viewer").post(URL, {"symbol": "DEC"}, format="json").status_code == 403
    assert alpha.client(role="analyst").post(URL, {"symbol": "DEC"}, format="json").status_code == 201
    mine = alpha.client().get(URL).json()[0]["id"]
    assert beta.client().get(f"{URL}{mine}/").status_code == 404
    assert beta.client(scope="trade").post(URL, {"symbol": "DEC"}, format="json").status_code == 404


def test_stream_status_and_real_time_inference(alpha, beta, stored, usage_redis):
    from models_registry.services import model_deploy, model_settings_update
    from models_registry.services.training import training_job_create, training_job_run

    status = alpha.client(scope="read").get("/api/v1/data-stream-status/").json()
    assert status["stream"]["length"] == 0 and {"DEC"} <= {b["symbol"] for b in status["last_bars"]}
    r = alpha.client(scope="read").post("/api/v1/inference/", {"symbol": "DEC"}, format="json")
    assert r.status_code == 404 and error_code(r) == "no_model"
    with schema_context(alpha.tenant.schema_name):
        job, _ = training_job_create(
            tenant=alpha.tenant,
            actor="t",
            model_name="dec",
            symbol="DEC",
            families=["logistic"],
            n_trials=2,
            enqueue=False,
        )
        training_job_run(job_id=job.pk)
        job.refresh_from_db()
        model = job.model_version.model
        model_settings_update(model=model, deploy_policy={"gate": "none"})
        model_deploy(model=model, version=job.model_version)
    r = alpha.client(scope="read").post("/api/v1/inference/", {"symbol": "dec"}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["version"] == "dec@1" and body["prediction"] in ("up", "down") and body["latency_ms"] > 0
    # the decision now carries the model's vote
    d = alpha.client(scope="trade").post(URL, {"symbol": "DEC"}, format="json").json()
    assert d["model_version"] == "dec@1" and "ml" in {v["agent"] for v in d["votes"]}
    assert beta.client().post("/api/v1/inference/", {"symbol": "DEC"}, format="json").status_code == 404


def test_flows_are_versioned_validated_and_the_active_one_decides(alpha, beta, stored, usage_redis):
    admin, viewer = alpha.client(role="admin"), alpha.client(role="viewer")
    presets = viewer.get("/api/v1/flows/presets/").json()
    assert presets["default"]["min_confidence"] == 0.55 and presets["conservative"]["min_confidence"] == 0.75
    assert viewer.post("/api/v1/flows/", {"name": "tight", "config": {}}, format="json").status_code == 403
    r = admin.post("/api/v1/flows/", {"name": "tight", "config": {"agents": ["technical", "oracle"]}}, format="json")
    assert r.status_code == 400 and error_code(r) == "unknown_agent"
    r = admin.post("/api/v1/flows/", {"name": "tight", "config": {"min_confidence": 7}}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_flow"
    assert viewer.get("/api/v1/flows/").json() == []  # nothing half-written
    config = {"agents": ["technical", "trend", "risk"], "min_confidence": 0.75}
    r = admin.post("/api/v1/flows/", {"name": "tight", "config": config}, format="json")
    assert r.status_code == 201 and r.json()["ref"] == "tight@1" and r.json()["active"]
    d = alpha.client(scope="trade").post(URL, {"symbol": "DEC"}, format="json").json()
    assert d["flow"] == "tight@1" and {v["agent"] for v in d["votes"]} == {"technical", "trend", "risk"}
    r = admin.post("/api/v1/flows/", {"name": "tight", "config": {**config, "min_confidence": 0.6}}, format="json")
    flows = viewer.get("/api/v1/flows/").json()
    assert [(f["ref"], f["active"]) for f in flows] == [("tight@2", True), ("tight@1", False)]
    assert beta.client().get("/api/v1/flows/").json() == []
