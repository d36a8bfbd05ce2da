"""RL models through the training pipeline: requested over the training endpoint (target kind
``rl``), trained as a job, stored as a registry version with an honest walk-forward report, gated
at deploy, and voting in the consensus as the ``rl`` agent once in production (with its events)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from models_registry import serving
from models_registry.models import JobState, ModelVersion, TrainingJob
from models_registry.services.registry import model_deploy
from models_registry.services.training import training_job_create, training_job_run
from tests.conftest import error_code

pytestmark = pytest.mark.django_db

URL = "/api/v1/training-jobs/"


def _import(fx, symbol, signal, n=1000, seed=7):
    frame = generate_bars(n, seed=seed, planted_signal=signal, planted_lag=1)
    with schema_context(fx.tenant.schema_name):
        md_services.bars_import(tenant=fx.tenant, symbol=symbol, timeframe="1d", raw=read_table(as_csv(frame), "csv"))


def _train(fx, symbol, model, algo="q_learning", episodes=10) -> ModelVersion:
    with schema_context(fx.tenant.schema_name):
        job, _ = training_job_create(
            tenant=fx.tenant, actor="test", model_name=model, symbol=symbol,
            target={"kind": "rl", "algo": algo}, n_trials=episodes, enqueue=False,
        )  # fmt: skip
        assert training_job_run(job_id=job.pk) == JobState.SUCCEEDED
        job.refresh_from_db()
        assert job.percent == 100
        return ModelVersion.objects.select_related("model", "feature_set").get(training_job=job)


def test_an_rl_job_over_the_training_endpoint_is_queued_with_a_normalised_target(alpha, usage_redis):
    _import(alpha, "RLA", 0.0, n=300)
    body = {"model": "rl-a", "symbol": "RLA", "n_trials": 12, "target": {"kind": "rl", "algo": "dqn"}}
    r = alpha.client(role="analyst").post(URL, body, format="json")
    assert r.status_code == 201, r.content
    params = r.json()["params"]
    assert params["target"] == {"kind": "rl", "algo": "dqn", "positions": "long_short", "n_lags": 2}
    assert params["families"] == [] and params["n_trials"] == 12


@pytest.mark.parametrize(
    ("target", "n_trials", "code"),
    [
        ({"kind": "rl", "algo": "sarsa"}, 5, "invalid_input"),
        ({"kind": "rl", "positions": "short_only"}, 5, "invalid_input"),
        ({"kind": "rl"}, 500, "invalid_budget"),
    ],
)
def test_bad_rl_requests_are_refused_and_write_nothing(alpha, usage_redis, target, n_trials, code):
    _import(alpha, "RLB", 0.0, n=300)
    r = alpha.client().post(URL, {"model": "rl-b", "symbol": "RLB", "target": target, "n_trials": n_trials},
                            format="json")  # fmt: skip
    assert r.status_code == 400 and error_code(r) == code, r.content
    with schema_context(alpha.tenant.schema_name):
        assert TrainingJob.objects.count() == 0


def test_viewers_cannot_start_rl_training(alpha, usage_redis):
    _import(alpha, "RLC", 0.0, n=300)
    r = alpha.client(role="viewer").post(URL, {"model": "rl-c", "symbol": "RLC", "target": {"kind": "rl"}},
                                         format="json")  # fmt: skip
    assert r.status_code == 403
    with schema_context(alpha.tenant.schema_name):
        assert TrainingJob.objects.count() == 0


def test_a_planted_edge_is_found_out_of_sample_deployed_and_votes_with_events(
    alpha, usage_redis, django_capture_on_commit_callbacks
):
    from eventbus import bus
    from intelligence.services import decision_make, model_for

    _import(alpha, "RLP", 0.15, seed=2)
    version = _train(alpha, "RLP", "rl-planted")
    report = version.report
    assert version.task == "rl" and version.no_edge is False
    assert report["oos"]["total_return"] > report["baselines"]["buy_and_hold"]["total_return"]
    assert report["significance"]["p_value"] < 0.05
    assert len(report["curves"]["episode_reward"]) == 10 and report["curves"]["oos_equity"]
    # the tenant's consensus (technical agents, no model votes) on the same out-of-sample bars
    consensus = report["consensus"]
    assert "error" not in consensus, consensus
    assert consensus["bars"] == report["oos_bars"] and consensus["model_votes"] is False
    assert consensus["rl_beats_it"] == (report["oos"]["total_return"] > consensus["total_return"])
    assert version.params["family"] == "rl:q_learning"
    with schema_context(alpha.tenant.schema_name):
        policy = serving.policy_get(version)  # decrypted, sha256-checked, loaded without pickle
        assert policy.algo == "q_learning"
        with pytest.raises(ApplicationError) as err:
            serving.bundle_get(version)  # never served as an AutoML predictor
        assert err.value.code == "not_a_predictor"
        model_deploy(model=version.model, version=version, reason="test")
        assert model_for(symbol="RLP", timeframe="1d", flow={}) is None  # the ML agent does not see it
        with django_capture_on_commit_callbacks(execute=True):
            decision = decision_make(tenant=alpha.tenant, symbol="RLP")
        vote = next(v for v in decision.votes if v["agent"] == "rl")
        assert not vote["details"].get("abstain"), vote
        assert vote["details"]["version"] == version.ref
        assert vote["action"] in ("BUY", "SELL", "HOLD")
        signals = bus.client().xrange(bus.stream_key("rl.signal.generated"))
        confidence = bus.client().xrange(bus.stream_key("rl.confidence.update"))
        assert len(signals) == 1 and len(confidence) == 1
        data = json.loads(signals[0][1][b"e"])["data"]
        assert data["decision_id"] == decision.pk and data["model_version"] == version.ref
        assert data["action"] == vote["action"]
        recommended = bus.client().xrange(bus.stream_key("rl.action.recommended"))
        assert len(recommended) == (0 if vote["action"] == "HOLD" else 1)


def test_no_signal_is_no_edge_the_gate_refuses_it_and_the_agent_abstains(alpha, usage_redis):
    from intelligence.services import decision_make

    _import(alpha, "RLN", 0.0, seed=11)
    version = _train(alpha, "RLN", "rl-noise", algo="actor_critic", episodes=6)
    assert version.no_edge is True and version.report["no_edge"] is True
    with schema_context(alpha.tenant.schema_name):
        with pytest.raises(ApplicationError) as err:
            model_deploy(model=version.model, version=version)
        assert err.value.code == "deploy_gate_failed"
        # deployed anyway under a permissive policy: the agent still abstains (no demonstrated edge)
        version.model.deploy_policy = {"gate": "none"}
        version.model.save(update_fields=["deploy_policy"])
        model_deploy(model=version.model, version=version)
        decision = decision_make(tenant=alpha.tenant, symbol="RLN")
        vote = next(v for v in decision.votes if v["agent"] == "rl")
        assert vote["details"]["abstain"] is True and "no demonstrated" in vote["reason"]


def test_a_tampered_rl_artifact_is_refused(alpha, usage_redis):
    _import(alpha, "RLT", 0.0, n=300)
    version = _train(alpha, "RLT", "rl-tamper", episodes=2)
    with schema_context(alpha.tenant.schema_name):
        ModelVersion.objects.filter(pk=version.pk).update(artifact_sha256="0" * 64)
        version.refresh_from_db()
        with pytest.raises(ApplicationError) as err:
            serving.policy_get(version)
        assert err.value.code == "artifact_tampered"
        assert np.isfinite(version.report["oos"]["total_return"])
