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


def demo_model_ensure(tenant, echo=None) -> str:
    """Train and deploy the demo model unless a production version exists; says what happened."""
    from features.services import feature_set_create

    from .models import ModelAlias
    from .services import model_deploy
    from .services.training import training_job_create, training_job_run

    with schema_context(tenant.schema_name):
        current = ModelAlias.objects.filter(model__name=DEMO_MODEL, name="production").select_related("version").first()
        if current is not None:
            return f"demo model {current.version.ref} is in production (kept from an earlier run)"
        fs, _ = feature_set_create(
            name="momentum", spec=MOMENTUM_SPEC, description="Core indicators plus recent returns", actor="system:demo"
        )
        job, _ = training_job_create(
            tenant=tenant,
            actor="system:demo",
            model_name=DEMO_MODEL,
            symbol="BTC-USD",
            timeframe="1d",
            feature_set=fs.ref,
            target={"kind": "direction", "horizon": 1},
            families=["xgboost"],
            n_trials=16,
            enqueue=False,
        )
        training_job_run(job_id=job.pk, echo=echo)
        job.refresh_from_db()
        version = getattr(job, "model_version", None)
        if version is None:
            return f"demo model training {job.state}: {job.error or job.message}"
        if version.no_edge:
            return f"demo model {version.ref} shows no edge over its baselines, so it was not deployed"
        model_deploy(model=version.model, version=version, reason="demo: beats its baselines", actor="system:demo")
        oos = (version.report or {}).get("oos", {})
        return f"demo model {version.ref} deployed to production (out-of-sample accuracy {oos.get('accuracy', 0):.3f})"


DEMO_RL_MODEL = "btc-daily-rl"


def demo_rl_ensure(tenant, echo=None) -> str:
    """Train and deploy the demo's RL policy (tabular Q-learning on BTC-USD 1d, the momentum
    features) unless one is in production; deployed only if it beats buy & hold and flat out of
    sample, like any version. Its votes make the rl.* events flow in the demo."""
    from features.models import FeatureSet

    from .models import ModelAlias
    from .services import model_deploy
    from .services.training import training_job_create, training_job_run

    with schema_context(tenant.schema_name):
        current = (
            ModelAlias.objects.filter(model__name=DEMO_RL_MODEL, name="production").select_related("version").first()
        )
        if current is not None:
            return f"demo RL policy {current.version.ref} is in production (kept from an earlier run)"
        fs = FeatureSet.objects.filter(name="momentum").order_by("-version").first()
        job, _ = training_job_create(
            tenant=tenant,
            actor="system:demo",
            model_name=DEMO_RL_MODEL,
            symbol="BTC-USD",
            timeframe="1d",
            feature_set=fs.ref if fs else "default",
            target={"kind": "rl", "algo": "q_learning", "positions": "long_short", "n_lags": 2},
            n_trials=20,
            enqueue=False,
        )
        training_job_run(job_id=job.pk, echo=echo)
        job.refresh_from_db()
        version = getattr(job, "model_version", None)
        if version is None:
            return f"demo RL policy training {job.state}: {job.error or job.message}"
        if version.no_edge:
            return f"demo RL policy {version.ref} shows no edge out of sample, so it was not deployed"
        model_deploy(model=version.model, version=version, reason="demo: beats buy & hold", actor="system:demo")
        return f"demo RL policy {version.ref} deployed to production"
