"""The first-run checklist: from an empty tenant to live decisions of its own trained model.

Five steps, each found done from what the tenant has (never from a flag that could drift):
market data → a feature set → a trained version → a version in production → a live decision that
version took part in. Each step has a one-click way through for a newcomer (the sample data with its
live replay, the starter feature set, a starter training job, deploying the best version, turning
the live market on) and a link to the page that does it by hand. Every action goes through the
same domain services (and so the same checks, quotas and audit trail) as the pages and the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.urls import reverse

from api.errors import ApplicationError
from tenants.models import ROLE_RANK, Role

STARTER_FEATURE_SET = "starter"
STARTER_MODEL = "my-first-model"
STARTER_TRIALS = 12
SAMPLE_SERIES = ("BTC-USD", "1d")  # the sample with a planted edge (marketdata.samples)


@dataclass
class Step:
    key: str
    title: str
    done: bool
    detail: str
    link: tuple[str, str]  # (label, url) of the page that does it by hand
    action: str = ""  # the one-click action's key (POST /app/onboarding/<action>/), if one applies now
    action_label: str = ""
    role: str = Role.ANALYST  # the least role the action needs
    busy: dict = field(default_factory=dict)  # a job under way: {"url", "percent", "state"}


def _series(tenant) -> tuple[str, str] | None:
    """The series to train and go live on: the sample's if loaded, else the longest one."""
    from django.db.models import Count

    from marketdata.models import Bar

    if Bar.objects.filter(instrument__symbol=SAMPLE_SERIES[0], timeframe=SAMPLE_SERIES[1]).exists():
        return SAMPLE_SERIES
    row = (
        Bar.objects.values("instrument__symbol", "timeframe")
        .annotate(n=Count("ts"))
        .order_by("-n", "instrument__symbol")
        .first()
    )
    return (row["instrument__symbol"], row["timeframe"]) if row else None


def _deployable():
    """Versions that may go to production by the default gate, newest first."""
    from models_registry.models import ModelVersion

    return (
        ModelVersion.objects.filter(no_edge=False, artifact__isnull=False)
        .defer("artifact", "report")
        .select_related("model")
        .order_by("-created_at")
    )


def checklist(tenant) -> dict:
    from features.models import FeatureSet
    from intelligence.models import Decision
    from marketdata.models import Instrument, LiveReplay
    from models_registry.models import JobState, ModelAlias, ModelVersion, TrainingJob

    steps: list[Step] = []
    instruments = Instrument.objects.filter(bars__isnull=False).distinct().count()
    series = _series(tenant) if instruments else None
    steps.append(
        Step(
            "data",
            "Load market data",
            bool(instruments),
            f"{instruments} instrument(s) with bars."
            if instruments
            else "Import your own bars (CSV or "
            "Parquet), or start with the sample: four synthetic series, one continued live.",
            ("Import bars", reverse("dashboard:data")),
            "" if instruments else "sample",
            "Use the sample data",
        )
    )
    # every tenant has the built-in ``default@1``: the step is a set of one's own (or a trained version)
    feature_sets = FeatureSet.objects.exclude(name="default", version=1).values("name").distinct().count()
    versions = ModelVersion.objects.count()
    steps.append(
        Step(
            "features",
            "Create a feature set",
            bool(feature_sets or versions),
            f"{feature_sets} feature set(s) of your own."
            if feature_sets
            else "Choose the indicators your model sees. The "
            "starter set: RSI, ADX, volatility and the last three returns.",
            ("Write one", reverse("dashboard:features")),
            "" if feature_sets else "features",
            "Create the starter feature set",
        )
    )
    running = TrainingJob.objects.filter(state__in=(JobState.QUEUED, JobState.RUNNING)).order_by("-created_at").first()
    train = Step(
        "train",
        "Train a model",
        bool(versions),
        f"{versions} model version(s) trained."
        if versions
        else "AutoML tries model families and settings "
        "with purged walk-forward validation and keeps the best, next to naive baselines.",
        ("Train by hand", reverse("dashboard:models")),
        "train" if not versions and not running and series else "",
        f"Train on {series[0]} {series[1]}" if series else "Train",
    )
    if running is not None:
        train.busy = {
            "url": reverse("dashboard:training-job", args=[running.pk]),
            "percent": running.percent,
            "state": running.state,
        }
        if not versions:
            train.detail = f"Training {running.model_name}: {running.percent} %."
    steps.append(train)
    production = ModelAlias.objects.filter(name="production").select_related("version", "model").first()
    best = _deployable().first()
    latest = ModelVersion.objects.defer("artifact", "report").select_related("model").order_by("-created_at").first()
    deploy = Step(
        "deploy",
        "Deploy it to production",
        production is not None,
        f"{production.version.ref} is in production."
        if production
        else "Only a version that beats its naive baselines can go to production: its decisions then use the model.",
        (
            "Open the version",
            reverse("dashboard:model-version", args=[(best or latest).model.name, (best or latest).version])
            if (best or latest)
            else reverse("dashboard:models"),
        ),
        "deploy" if production is None and best is not None else "",
        f"Deploy {best.ref}" if best else "Deploy",
        Role.ADMIN,
    )
    if production is None and best is None and latest is not None:
        deploy.detail = (
            f"{latest.ref} shows no edge over its baselines, so it can't go to production. Train again with "
            "more trials, another feature set or another series."
        )
    steps.append(deploy)
    live = None
    live_detail = "Decisions of your model arrive on the Decisions page and the WebSocket feed."
    live_action = ""
    if production is not None:
        live = (
            Decision.objects.filter(model_version=production.version.ref, source=Decision.Source.STREAM)
            .order_by("-id")
            .first()
        )
        v = production.version
        replaying = LiveReplay.objects.filter(instrument__symbol=v.symbol, timeframe=v.timeframe, enabled=True)
        if live is None and not replaying.exists():
            live_action = "live"
            live_detail = (
                f"{v.symbol} {v.timeframe} has no live market yet: connect a feed (ingest_feed) or continue "
                "your stored bars live."
            )
        elif live is None:
            live_detail = f"The live market of {v.symbol} {v.timeframe} is running: the first decision is seconds away."
    steps.append(
        Step(
            "live",
            "Watch live decisions",
            live is not None,
            f"Decision #{live.pk}: {live.action} {live.symbol} at {live.confidence:.0%} confidence."
            if live
            else live_detail,
            ("Open Decisions", reverse("dashboard:decisions")),
            live_action,
            "Start the live market",
        )
    )
    done = sum(s.done for s in steps)
    return {"steps": steps, "done": done, "total": len(steps), "complete": done == len(steps)}


# --- the one-click actions ---------------------------------------------------------------------


def _need(role: str, least: str) -> None:
    if ROLE_RANK[role] < ROLE_RANK[least]:
        raise ApplicationError(
            "forbidden", f"This step needs the {least} role or higher; ask an owner or admin.", status=403
        )


def action_run(*, tenant, user, role: str, action: str) -> tuple[str, str | None]:
    """Run a checklist step's one-click action; returns (message, url to go to next or None)."""
    from django_tenants.utils import schema_context

    handlers = {"sample": _sample, "features": _features, "train": _train, "deploy": _deploy, "live": _live}
    handler = handlers.get(action)
    if handler is None:
        raise ApplicationError("unknown_step", f"There is no onboarding step '{action}'.", status=404)
    _need(role, Role.ADMIN if action == "deploy" else Role.ANALYST)
    with schema_context(tenant.schema_name):
        return handler(tenant, user)


def _sample(tenant, user):
    from marketdata.samples import sample_data_load
    from marketdata.services import live_replay_set

    loaded = sample_data_load(tenant)
    live_replay_set(symbol=SAMPLE_SERIES[0], timeframe=SAMPLE_SERIES[1], actor=user)
    what = ", ".join(loaded) if loaded else "the sample series were already here"
    return f"Sample data loaded ({what}); {' '.join(SAMPLE_SERIES)} now continues live.", None


def _features(tenant, user):
    from features.services import feature_set_create
    from models_registry.samples import MOMENTUM_SPEC

    fs, _ = feature_set_create(
        name=STARTER_FEATURE_SET,
        spec=MOMENTUM_SPEC,
        description="Starter: RSI, ADX, volatility and the last three returns",
        actor=user,
    )
    return f"Feature set {fs.ref} created.", None


def _train(tenant, user):
    from features.models import FeatureSet
    from models_registry.services import training_job_create

    series = _series(tenant)
    fs = (
        FeatureSet.objects.filter(name=STARTER_FEATURE_SET).order_by("-version").first()
        or FeatureSet.objects.exclude(name="default", version=1).order_by("-created_at").first()
        or FeatureSet.objects.order_by("-created_at").first()
    )
    if series is None or fs is None:
        raise ApplicationError("not_ready", "Load market data and create a feature set first.", status=409)
    job, _ = training_job_create(
        tenant=tenant,
        actor=user,
        model_name=STARTER_MODEL,
        symbol=series[0],
        timeframe=series[1],
        feature_set=fs.ref,
        target={"kind": "direction", "horizon": 1},
        n_trials=STARTER_TRIALS,
    )
    return f"Training {job.model_name} on {series[0]} {series[1]} ({STARTER_TRIALS} trials).", reverse(
        "dashboard:training-job", args=[job.pk]
    )


def _deploy(tenant, user):
    from models_registry.models import ModelAlias
    from models_registry.services import model_deploy

    if ModelAlias.objects.filter(name="production").exists():
        return "A version is already in production.", None
    best = _deployable().first()
    if best is None:
        raise ApplicationError(
            "no_deployable_version",
            "No version beats its naive baselines yet; train again with more trials or another feature set.",
            status=409,
        )
    with transaction.atomic():
        model_deploy(model=best.model, version=best, reason="onboarding: first deploy", actor=user)
    return f"{best.ref} is in production: its decisions now use it.", None


def _live(tenant, user):
    from marketdata.services import live_replay_set
    from models_registry.models import ModelAlias

    production = ModelAlias.objects.filter(name="production").select_related("version").first()
    if production is None:
        raise ApplicationError("not_ready", "Deploy a model version to production first.", status=409)
    v = production.version
    live_replay_set(symbol=v.symbol, timeframe=v.timeframe, actor=user)
    return f"{v.symbol} {v.timeframe} now continues live from its last stored bar.", None
