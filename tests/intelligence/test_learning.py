"""The learning loop's governance: live accuracy per model version, A/B metrics with promote and
abort, auto-rollback, the circuit breaker on prediction errors, and validate-ai-accuracy."""

import datetime as dt
import json
from unittest import mock

import numpy as np
import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from compliance.models import AuditRecord
from eventbus import bus
from intelligence import learning, services
from intelligence.agents.features import agent_feature_spec
from intelligence.models import Decision
from intelligence.stream import TenantStream
from models_registry import breaker
from models_registry.ml import artifacts
from models_registry.models import (
    AliasEvent,
    CircuitState,
    ModelAlert,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
)
from models_registry.services import registry
from models_registry.services.maintenance import registry_sweep_run
from tenants.models import Role
from tests.conftest import error_code
from tests.intelligence.helpers import clear_streams, live_market
from tests.models_registry.factories import stored_version

pytestmark = pytest.mark.django_db


def _decisions(ref: str, hits: int, n: int, **extra) -> None:
    """``n`` resolved stream decisions served by ``ref``: ``hits`` of the model's calls right."""
    base = timezone.now().replace(microsecond=0)
    Decision.objects.bulk_create(
        Decision(
            source="api",
            symbol=extra.get("symbol", "LRN"),
            timeframe="1d",
            ts=base - dt.timedelta(days=i),
            action=extra.get("action", "HOLD"),
            confidence=0.5,
            model_version=ref,
            realized=1,
            correct=None,
            model_correct=i < hits,
            resolved_at=base,
        )
        for i in range(n)
    )


# --- statistics -----------------------------------------------------------------------------------


def test_intervals_and_tests_are_the_textbook_ones():
    lo, hi = learning.wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert learning.p_better_than_coin(60, 100) == pytest.approx(0.0284, abs=1e-3)
    assert learning.p_better_than_coin(50, 100) > 0.5
    assert learning.p_worse(40, 100, 60, 100) < 0.01 < learning.p_worse(60, 100, 40, 100)
    assert learning.wilson(0, 0) is None and learning.p_worse(1, 0, 1, 1) is None


def test_a_small_lucky_sample_does_not_meet_a_target():
    assert learning.Tally(10, 10).report(0.8)["meets_target"] is False  # 10/10: not enough outcomes
    big = learning.Tally(400, 360).report(0.8)  # 90 %, interval well above 80 %
    assert big["meets_target"] is True and big["verdict"] == "better than a coin"
    close = learning.Tally(400, 330).report(0.8)  # 82.5 %: the point clears 80 %, the interval does not
    assert close["meets_target"] is False and "not shown to reach 80%" in close["verdict"]
    coin = learning.Tally(400, 205).report(0.65)
    assert coin["verdict"].startswith("no better than a coin") and "below the 65% target" in coin["verdict"]


def test_the_model_direction_is_read_from_the_ml_vote():
    up = [{"agent": "trend", "action": "SELL"}, {"agent": "ml", "action": "HOLD", "details": {"p_up": 0.51}}]
    assert learning.model_direction(up) == 1 and learning.model_correct(up, 1) is True
    assert learning.model_correct(up, -1) is False
    ret = [{"agent": "ml", "action": "SELL", "details": {"predicted_return": -0.01}}]
    assert learning.model_direction(ret) == -1
    assert learning.model_correct([{"agent": "ml", "action": "HOLD", "details": {}}], 1) is None


# --- validate-ai-accuracy ---------------------------------------------------------------------------


def _voted(n: int, *, consensus_hits: int, agent_hits: dict[str, int]) -> None:
    base = timezone.now().replace(microsecond=0)
    rows = []
    for i in range(n):
        votes = [{"agent": a, "action": "BUY" if i < h else "SELL", "confidence": 0.6} for a, h in agent_hits.items()]
        votes.append({"agent": "sentiment", "action": "HOLD", "confidence": 0.0})  # makes no call
        rows.append(
            Decision(
                source="api",
                symbol="VAL",
                timeframe="1d",
                ts=base - dt.timedelta(days=i),
                action="BUY" if i < consensus_hits else "SELL",
                confidence=0.6,
                votes=votes,
                realized=1,
                resolved_at=base,
            )
        )
    Decision.objects.bulk_create(rows)


def test_validate_ai_accuracy_reports_each_level_against_its_target(alpha, beta):
    with schema_context(alpha.tenant.schema_name):
        _voted(200, consensus_hits=110, agent_hits={"technical": 180, "pattern": 152})
        _decisions("lrn@1", 12, 20)
    r = alpha.client().get("/api/v1/validate-ai-accuracy/?window=1000")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["resolved_decisions"] == 220 and body["targets"]["consensus"] == 0.8
    consensus = body["consensus"]
    assert consensus["n"] == 200 and consensus["accuracy"] == 0.55 and consensus["meets_target"] is False
    agents = {a["agent"]: a for a in body["agents"]}
    assert "sentiment" not in agents  # HOLD is no call
    assert agents["technical"]["accuracy"] == 0.9 and agents["technical"]["meets_target"] is True
    assert agents["technical"]["target"] == 0.7 and agents["technical"]["premium"] is False
    # pattern is a premium (pro+) agent: 76 % point estimate, target 75 %, interval not above it
    assert agents["pattern"]["premium"] is True and agents["pattern"]["target"] == 0.75
    assert agents["pattern"]["meets_target"] is False
    model = {m["version"]: m for m in body["models"]}["lrn@1"]
    assert model["n"] == 20 and model["verdict"].startswith("not enough outcomes")
    # one symbol, a window
    only = alpha.client().get("/api/v1/validate-ai-accuracy/?symbol=val&window=50").json()
    assert only["resolved_decisions"] == 50 and only["symbol"] == "VAL" and only["models"] == []
    # another tenant sees none of it
    other = beta.client().get("/api/v1/validate-ai-accuracy/").json()
    assert other["resolved_decisions"] == 0 and other["agents"] == [] and other["consensus"]["n"] == 0


@pytest.mark.parametrize("query", ["window=0", "window=abc", "window=1000000", "symbol=" + "X" * 40])
def test_validate_ai_accuracy_rejects_bad_parameters(alpha, query):
    r = alpha.client().get(f"/api/v1/validate-ai-accuracy/?{query}")
    assert r.status_code == 400 and error_code(r) in ("invalid_window", "invalid_symbol")


# --- A/B ------------------------------------------------------------------------------------------


@pytest.fixture
def ab_test(alpha):
    with schema_context(alpha.tenant.schema_name):
        v1 = stored_version("abm", seed=1)
        v2 = stored_version("abm", seed=2)
        model = v1.model
        registry.model_deploy(model=model, version=v1)
        registry.model_deploy(model=model, version=v2, alias="challenger")
        registry.model_settings_update(model=model, traffic={"challenger_percent": 30})
    return v1, v2


def test_ab_metrics_compare_the_arms_and_promote_ends_the_test(alpha, beta, ab_test):
    v1, v2 = ab_test
    with schema_context(alpha.tenant.schema_name):
        _decisions(v1.ref, 100, 200)
        _decisions(v2.ref, 150, 200)
    r = alpha.client().get("/api/v1/models/abm/ab/")
    assert r.status_code == 200, r.content
    ab = r.json()
    assert ab["challenger_percent"] == 30
    assert ab["production"]["version"] == 1 and ab["production"]["live"]["accuracy"] == 0.5
    assert ab["challenger"]["version"] == 2 and ab["challenger"]["live"]["accuracy"] == 0.75
    assert ab["production"]["offline_accuracy"] == 0.56
    assert ab["comparison"]["difference"] == 0.25 and ab["comparison"]["p_challenger_better"] < 0.001
    assert ab["comparison"]["verdict"].startswith("challenger is better")
    # other tenant: no such model
    assert beta.client().get("/api/v1/models/abm/ab/").status_code == 404
    # ensemble-status shows the split, the circuits and live accuracy; the other tenant sees no model
    models = alpha.client().get("/api/v1/ensemble-status/").json()["models"]
    assert models == [
        {
            "model": "abm",
            "challenger_percent": 30.0,
            "production": {"version": "abm@1", "circuit": "closed", "live_accuracy": 0.5, "live_n": 200},
            "challenger": {"version": "abm@2", "circuit": "closed", "live_accuracy": 0.75, "live_n": 200},
            "ab_verdict": ab["comparison"]["verdict"],
            "rollback_policy": {},
        }
    ]
    assert beta.client().get("/api/v1/ensemble-status/").json()["models"] == []
    # promoting needs an admin
    assert alpha.client(role=Role.ANALYST).post("/api/v1/models/abm/ab/promote/").status_code == 403
    r = alpha.client(role=Role.ADMIN).post("/api/v1/models/abm/ab/promote/", {"reason": "won"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["aliases"] == {"production": 2} and r.json()["traffic"] == {"challenger_percent": 0}
    with schema_context(alpha.tenant.schema_name):
        assert AliasEvent.objects.filter(model__name="abm", alias="challenger", action="remove").exists()
        assert AuditRecord.objects.filter(action="model.deploy").exists()
    # no test left: promote and abort say so
    again = alpha.client(role=Role.ADMIN).post("/api/v1/models/abm/ab/abort/")
    assert again.status_code == 400 and error_code(again) == "no_ab_test"
    assert alpha.client().get("/api/v1/models/abm/ab/").json()["comparison"] is None


def test_abort_returns_all_traffic_to_production(alpha, ab_test):
    r = alpha.client(role=Role.ADMIN).post("/api/v1/models/abm/ab/abort/")
    assert r.status_code == 200 and r.json()["aliases"] == {"production": 1}
    with schema_context(alpha.tenant.schema_name):
        model = RegisteredModel.objects.get(name="abm")
        assert model.traffic == {"challenger_percent": 0}
        from models_registry import serving

        assert all(serving.arms_get(model).pick(f"k{i}").version == 1 for i in range(50))


def test_ab_with_too_few_outcomes_says_so(alpha, ab_test):
    v1, v2 = ab_test
    with schema_context(alpha.tenant.schema_name):
        _decisions(v1.ref, 5, 10)
    ab = alpha.client().get("/api/v1/models/abm/ab/?window=50").json()
    assert ab["comparison"]["verdict"].startswith("not enough outcomes")
    assert ab["challenger"]["live"]["n"] == 0 and ab["comparison"]["difference"] is None
    bad = alpha.client().get("/api/v1/models/abm/ab/?window=5")
    assert bad.status_code == 400 and error_code(bad) == "invalid_window"


def test_the_traffic_split_is_per_bar_and_stable():
    from models_registry.serving import Arms

    prod, chal = ModelVersion(pk=1, version=1), ModelVersion(pk=2, version=2)
    arms = Arms(prod, chal, 25.0)
    keys = [services.ab_key("BTC", 1_700_000_000 + 86400 * i) for i in range(2000)]
    share = sum(arms.pick(k) is chal for k in keys) / len(keys)
    assert 0.22 < share < 0.28  # one instrument's bars split about 25/75
    assert [arms.pick(k) for k in keys[:50]] == [arms.pick(k) for k in keys[:50]]  # a redelivered bar: same arm
    chal.circuit = CircuitState.OPEN
    assert all(arms.pick(k) is prod for k in keys[:200])  # an open challenger gets nothing
    prod.circuit = CircuitState.OPEN
    assert arms.pick(keys[0]) is None


# --- auto-rollback --------------------------------------------------------------------------------


def _two_deploys(policy: dict):
    v1 = stored_version("rb", seed=1)
    v2 = stored_version("rb", seed=2)
    model = v1.model
    registry.model_settings_update(model=model, deploy_policy={"gate": "edge", **policy})
    registry.model_deploy(model=model, version=v1)
    return model, v1, v2


def test_production_below_the_rollback_threshold_is_rolled_back(alpha):
    with schema_context(alpha.tenant.schema_name):
        model, v1, v2 = _two_deploys({"rollback_min_accuracy": 0.5, "rollback_window": 50})
        registry.model_deploy(model=model, version=v2)
        _decisions(v2.ref, 20, 49)
        assert learning.rollback_check(model) is None  # 49 < window: no verdict yet
        _decisions(v2.ref, 0, 1)
        result = registry_sweep_run()["live_checks"]
        assert result and result[0]["action"] == "rolled back to rb@1"
        assert ModelAlias.objects.get(model=model, name="production").version == v1
        alert = ModelAlert.objects.get(model=model, kind="auto_rollback")
        assert (
            alert.severity == "critical"
            and "0.400" in alert.message
            and "below the rollback threshold" in alert.message
        )
        event = AliasEvent.objects.filter(model=model).first()
        assert event.action == "rollback" and event.reason.startswith("auto-rollback") and event.actor == "system"
        # v1 is judged on its own outcomes since it came back: none yet, so no flapping
        assert learning.rollback_check(model) is None


def test_production_significantly_worse_than_the_version_it_replaced_is_rolled_back(alpha):
    with schema_context(alpha.tenant.schema_name):
        model, v1, v2 = _two_deploys({"rollback_window": 100})
        _decisions(v1.ref, 70, 100)
        registry.model_deploy(model=model, version=v2)
        _decisions(v2.ref, 52, 100)  # 52 % vs 70 %: p < 0.01
        result = learning.rollback_check(model)
        assert result["action"] == "rolled back to rb@1" and "significantly worse" in result["reason"]


def test_a_merely_different_version_is_kept(alpha):
    with schema_context(alpha.tenant.schema_name):
        model, v1, v2 = _two_deploys({"rollback_min_accuracy": 0.45, "rollback_window": 100})
        _decisions(v1.ref, 60, 100)
        registry.model_deploy(model=model, version=v2)
        _decisions(v2.ref, 55, 100)  # lower, not significantly; above the floor
        assert learning.rollback_check(model) is None
        assert ModelAlias.objects.get(model=model, name="production").version == v2


def test_without_an_earlier_version_the_circuit_opens_instead(alpha):
    with schema_context(alpha.tenant.schema_name):
        v1 = stored_version("solo", seed=3)
        registry.model_settings_update(
            model=v1.model, deploy_policy={"rollback_min_accuracy": 0.55, "rollback_window": 30}
        )
        registry.model_deploy(model=v1.model, version=v1)
        _decisions(v1.ref, 10, 30)
        result = learning.rollback_check(v1.model)
        assert result["action"].startswith("circuit opened")
        v1.refresh_from_db()
        assert v1.circuit == CircuitState.OPEN and not v1.circuit_auto  # stays open until someone acts
        assert breaker.half_open_due(timezone.now() + dt.timedelta(days=1)) == []


@pytest.mark.parametrize(
    "policy",
    [
        {"rollback_min_accuracy": 1.5},
        {"rollback_min_accuracy": "half"},
        {"rollback_window": 3},
        {"rollback_window": 2.5},
    ],
)
def test_bad_rollback_policies_are_refused_and_change_nothing(alpha, policy):
    with schema_context(alpha.tenant.schema_name):
        stored_version("pol")
    r = alpha.client(role=Role.ADMIN).patch("/api/v1/models/pol/", {"deploy_policy": policy}, format="json")
    assert r.status_code == 400 and error_code(r) == "invalid_policy"
    with schema_context(alpha.tenant.schema_name):
        assert RegisteredModel.objects.get(name="pol").deploy_policy == {}
    ok = alpha.client(role=Role.ADMIN).patch(
        "/api/v1/models/pol/", {"deploy_policy": {"rollback_min_accuracy": 0.5, "rollback_window": 200}}, format="json"
    )
    assert ok.status_code == 200 and ok.json()["deploy_policy"]["rollback_window"] == 200


# --- circuit breaker ------------------------------------------------------------------------------


def _broken(version: ModelVersion) -> None:
    """Corrupt the stored artifact (decryption then fails) and drop any loaded copy: every
    prediction errors, as after a bad restore or a storage fault."""
    from django.db import connection

    from models_registry import serving

    ModelVersion.objects.filter(pk=version.pk).update(artifact=b"\0" * 64)
    serving._bundles.discard(lambda key: key[:2] == (connection.schema_name, version.pk))
    version.refresh_from_db()


def test_repeated_prediction_errors_open_the_circuit_and_a_probe_closes_it(alpha, settings):
    settings.MODEL_BREAKER_ERRORS = 3
    row = {"f1": 0.1, "f2": -0.2, "f3": 0.3}
    with schema_context(alpha.tenant.schema_name):
        version = stored_version("brk", seed=4)
        good = bytes(version.artifact)
        registry.model_deploy(model=version.model, version=version)
        assert services.ml_prediction(version, row)["version"] == "brk@1"
        version = ModelVersion.objects.select_related("model").get(pk=version.pk)
        _broken(version)
        assert [services.ml_prediction(version, row) for _ in range(3)] == [None, None, None]
        version.refresh_from_db()
        assert version.circuit == CircuitState.OPEN and version.circuit_auto
        assert "3 consecutive prediction errors" in version.circuit_reason
        alert = ModelAlert.objects.get(version=version, kind="circuit_open")
        assert "Decisions use the other agents" in alert.message
        # serving skips it: decisions go on without the ML agent
        assert services.model_version_for(symbol="TEST", timeframe="1d", flow={"model": "brk"}, request_key="k") is None
        # not before the cool-down; then half-open, serving again on probation
        assert breaker.half_open_due(timezone.now()) == []
        assert breaker.half_open_due(timezone.now() + dt.timedelta(seconds=301)) == ["brk@1"]
        version.refresh_from_db()
        assert version.circuit == CircuitState.HALF_OPEN
        # a failing probe opens it again at once
        assert services.ml_prediction(version, row) is None
        version.refresh_from_db()
        assert version.circuit == CircuitState.OPEN
        # repaired: the next probe succeeds and closes the circuit
        ModelVersion.objects.filter(pk=version.pk).update(artifact=good, circuit=CircuitState.HALF_OPEN)
        version.refresh_from_db()
        assert services.ml_prediction(version, row) is not None
        version.refresh_from_db()
        assert version.circuit == CircuitState.CLOSED
        states = [e.details["state"] for e in AuditRecord.objects.filter(action="model.circuit").order_by("id")]
        assert states == ["open", "half_open", "open", "closed"]


def test_an_operator_opened_circuit_is_not_half_opened_by_the_breaker(alpha):
    with schema_context(alpha.tenant.schema_name):
        version = stored_version("man", seed=5)
        registry.circuit_set(version=version, state="open", actor="ops", reason="bad data upstream")
        assert breaker.half_open_due(timezone.now() + dt.timedelta(days=1)) == []


# --- the stream: A/B per bar, one batch prediction per version, model outcomes --------------------


@pytest.fixture
def stream_market(alpha):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    yield schema, live_market(alpha.tenant, "TEST", seed=71, live=80)
    clear_streams(schema)


def _version_on_agent_features(name: str, seed: int) -> ModelVersion:
    """A sealed version trained (on noise) over three of the agents' own feature columns."""
    from features.engine import IncrementalEngine

    columns = list(IncrementalEngine(agent_feature_spec("1d"), "1d").columns[:3])
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 3))
    y = (X[:, 0] + rng.standard_normal(200) > 0).astype(int)
    bundle = artifacts.ModelBundle(
        members=[Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(X, y)],
        weights=[1.0],
        task="binary",
        classes=["down", "up"],
        feature_names=columns,
    )
    return stored_version(name, bundle=bundle, feature_set=services.agents_feature_set("1d"))


def _drain(stream: TenantStream) -> None:
    while stream.run_once(block_ms=10):
        pass


def test_the_stream_splits_bars_between_the_arms_and_scores_each_version(
    alpha, stream_market, django_capture_on_commit_callbacks
):
    schema, live = stream_market
    with schema_context(schema):
        v1 = _version_on_agent_features("live", 11)
        v2 = _version_on_agent_features("live", 12)
        model = v1.model
        registry.model_settings_update(model=model, deploy_policy={"gate": "none"}, traffic={"challenger_percent": 40})
        registry.model_deploy(model=model, version=v1)
        registry.model_deploy(model=model, version=v2, alias="challenger")
    bus.publish_many("market.data.update", live, schema=schema)
    stream = TenantStream(alpha.tenant, batch=40)
    stream.start()
    calls = []
    real = services.ml_predictions

    def counting(version, rows):
        calls.append((version.ref, len(rows)))
        return real(version, rows)

    with (
        mock.patch("intelligence.stream.publish_decisions"),
        mock.patch.object(services, "ml_predictions", counting),
        django_capture_on_commit_callbacks(execute=True),
    ):
        _drain(stream)
    with schema_context(schema):
        decisions = list(Decision.objects.filter(source="stream").order_by("ts"))
        assert len(decisions) == 80
        served = [d.model_version for d in decisions]
        assert set(served) == {"live@1", "live@2"}
        share = served.count("live@2") / len(served)
        assert 0.2 < share < 0.6
        # each bar took the arm its key picks: the split is the serving rule, not an accident
        from models_registry import serving

        arms = serving.arms_get(model)
        assert served == [arms.pick(services.ab_key("TEST", d.ts)).ref for d in decisions]
        # one batch call per version per read batch, not one per bar
        assert len(calls) <= 4 and sum(n for _, n in calls) == 80
        resolved = [d for d in decisions if d.resolved_at is not None]
        assert len(resolved) == 79 and all(d.model_correct is not None for d in resolved)
        assert all(d.model_correct == (learning.model_direction(d.votes) == d.realized) for d in resolved)
    # the outcomes went out as events, with the model's own score
    outcomes = bus.client().xrange(bus.stream_key("feedback.prediction.outcome", schema))
    assert len(outcomes) == 79 and all(b"model_correct" in fields[b"e"] for _, fields in outcomes)
    # and every served prediction as ml.prediction.ready, naming its version and decision
    predictions = [
        json.loads(f[b"e"])["data"] for _, f in bus.client().xrange(bus.stream_key("ml.prediction.ready", schema))
    ]
    assert sorted((p["decision_id"], p["model_version"]) for p in predictions) == [
        (d.pk, d.model_version) for d in decisions
    ]
    ab = alpha.client().get("/api/v1/models/live/ab/").json()
    assert ab["production"]["live"]["n"] + ab["challenger"]["live"]["n"] == 79


def test_a_failing_model_opens_its_circuit_and_the_stream_decides_without_it(alpha, stream_market, settings):
    settings.MODEL_BREAKER_ERRORS = 2
    schema, live = stream_market
    with schema_context(schema):
        v1 = _version_on_agent_features("flaky", 13)
        registry.model_settings_update(model=v1.model, deploy_policy={"gate": "none"})
        registry.model_deploy(model=v1.model, version=v1)
        _broken(v1)
    bus.publish_many("market.data.update", live, schema=schema)
    stream = TenantStream(alpha.tenant, batch=10)
    stream.start()
    with mock.patch("intelligence.stream.publish_decisions"):
        _drain(stream)
    with schema_context(schema):
        decisions = list(Decision.objects.filter(source="stream").order_by("ts"))
        assert len(decisions) == 80  # no bar lost to the failing model
        assert all(d.model_version == "" for d in decisions)
        v1.refresh_from_db()
        assert v1.circuit == CircuitState.OPEN
        # after the second failed batch the version is no longer even tried
        assert all("ml" not in {v["agent"] for v in d.votes if v["action"] != "HOLD"} for d in decisions)
        assert ModelAlert.objects.filter(version=v1, kind="circuit_open").count() == 1
