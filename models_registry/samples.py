"""The demo tenant's model: trained on its sample data once (then kept), deployed only if it
honestly beats its baselines. The BTC-USD daily sample carries a planted momentum edge (see
marketdata.samples), and the ``momentum`` feature set gives the model yesterday's returns to find it."""

from __future__ import annotations

from django_tenants.utils import schema_context

DEMO_MODEL = "btc-daily"
MOMENTUM_SPEC = {
    "features": [
        {"indicator": "returns", "params": {"kind": "log", "length": 1}, "lags": [1, 2, 3]},
        {"indicator": "rsi", "params": {"length": 14}},
        {"indicator": "volatility", "params": {"length": 20}},
        {"indicator": "adx", "params": {"length": 14}},
    ]
}


def _demo_ensure(tenant, *, model: str, label: str, feature_set, echo=None, **job) -> tuple[str, object]:
    """Train ``model`` on the demo series and deploy it unless a production version exists; it is
    deployed only if it shows an edge, like any version. (what happened, the version or None)."""
    from .models import ModelAlias
    from .services import model_deploy
    from .services.training import training_job_create, training_job_run

    with schema_context(tenant.schema_name):
        current = ModelAlias.objects.filter(model__name=model, name="production").select_related("version").first()
        if current is not None:
            return f"{label} {current.version.ref} is in production (kept from an earlier run)", None
        job, _ = training_job_create(
            tenant=tenant, actor="system:demo", model_name=model, symbol="BTC-USD", timeframe="1d",
            feature_set=feature_set().ref, enqueue=False, **job,
        )  # fmt: skip
        training_job_run(job_id=job.pk, echo=echo)
        job.refresh_from_db()
        version = getattr(job, "model_version", None)
        if version is None:
            return f"{label} training {job.state}: {job.error or job.message}", None
        if version.no_edge:
            return f"{label} {version.ref} shows no edge over its baselines, so it was not deployed", None
        model_deploy(model=version.model, version=version, reason="demo: beats its baselines", actor="system:demo")
        return f"{label} {version.ref} deployed to production", version


def _momentum():
    from features.services import feature_set_create

    fs, _ = feature_set_create(
        name="momentum", spec=MOMENTUM_SPEC, description="Core indicators plus recent returns", actor="system:demo"
    )
    return fs


def demo_model_ensure(tenant, echo=None) -> str:
    """Train and deploy the demo model unless a production version exists; says what happened."""
    message, version = _demo_ensure(
        tenant, model=DEMO_MODEL, label="demo model", feature_set=_momentum, echo=echo,
        target={"kind": "direction", "horizon": 1}, families=["xgboost"], n_trials=16,
    )  # fmt: skip
    if version is not None:
        oos = (version.report or {}).get("oos", {})
        message += f" (out-of-sample accuracy {oos.get('accuracy', 0):.3f})"
    return message


DEMO_RL_MODEL = "btc-daily-rl"


def demo_rl_ensure(tenant, echo=None) -> str:
    """Train and deploy the demo's RL policy (tabular Q-learning on BTC-USD 1d, the momentum
    features) unless one is in production; deployed only if it beats buy & hold and flat out of
    sample, like any version. Its votes make the rl.* events flow in the demo."""
    message, _ = _demo_ensure(
        tenant, model=DEMO_RL_MODEL, label="demo RL policy", feature_set=_momentum, echo=echo,
        target={"kind": "rl", "algo": "q_learning", "positions": "long_short", "n_lags": 2}, n_trials=20,
    )  # fmt: skip
    return message
