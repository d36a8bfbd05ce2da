"""Training jobs: create (validated, limited by plan, idempotent), run (on Celery; resumable after a
worker is lost; at most one version per job), cancel, retrain.

Exactly-once, step by step:
- the API validates everything and writes the job in one transaction; the task is sent on commit;
- a run takes a PostgreSQL advisory lock on the job for its whole duration (released by the server
  if the worker dies), so two deliveries of the same job never run at once;
- the Optuna study lives in PostgreSQL under the job's id: a re-delivered job (acks_late and
  reject_on_worker_lost, or the reaper for a worker killed outright) continues the same study;
- the version row has a unique reference to its job, so a job can never make two versions.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import zlib

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from api.errors import ApplicationError
from compliance.services import actor_display, audit_record

from ..ml import families as ml_families
from ..ml import sequence as ml_sequence
from ..ml.targets import TargetSpec
from ..models import FINISHED_STATES, JobState, ModelAlert, RegisteredModel, TrainingJob
from . import rl_training
from .registry import CHALLENGER, model_deploy, model_get_or_create, version_create

log = logging.getLogger(__name__)

DEFAULT_FAMILIES = ("xgboost", "logistic", "random_forest", "extra_trees")
LOG_LINES = 100


class Cancelled(Exception):
    pass


# --- create --------------------------------------------------------------------------------------


def training_job_create(
    *,
    tenant,
    actor,
    model_name: str,
    symbol: str,
    feature_set: str = "default",
    timeframe: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    target: dict | None = None,
    families: list[str] | None = None,
    n_trials: int = 30,
    timeout_seconds: int | None = None,
    fee_bps: float = 10.0,
    deploy_to: str | None = None,
    idempotency_key: str | None = None,
    enqueue: bool = True,
) -> tuple[TrainingJob, bool]:
    """Validate a training request and queue it. The same ``idempotency_key`` returns the job it
    created first (``created=False``) instead of queueing another."""
    from features import selectors as fs_selectors
    from marketdata import selectors as md_selectors
    from tenants import limits

    if idempotency_key:
        existing = TrainingJob.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    name = (model_name or "").strip().lower()
    from django.core.validators import validate_slug

    try:
        validate_slug(name)
    except Exception as exc:
        raise ApplicationError("invalid_name", "A model name is letters, digits, - or _.", {"model": name}) from exc
    if rl_training.is_rl(target):  # a reinforcement-learning policy instead of an AutoML ensemble
        target = rl_training.rl_target_validate(target)
        rl_training.rl_budget_check(n_trials)
        spec, families = None, []
    else:
        spec = TargetSpec.from_json(target or {})
        spec.validate()
        families = list(families or DEFAULT_FAMILIES)
    unknown = [f for f in families if f not in ml_families.FAMILIES]
    if unknown or (not families and spec is not None):
        raise ApplicationError(
            "invalid_families",
            f"Unknown model families {unknown}; choose from {', '.join(ml_families.FAMILIES)}.",
            {"unknown": unknown, "choices": list(ml_families.FAMILIES)},
        )
    cap = limits.plan_limit(tenant, "trials_per_job")
    if not 1 <= n_trials <= (cap or 2000):
        raise ApplicationError(
            "invalid_budget" if cap is None or n_trials < 1 else "plan_limit_exceeded",
            f"n_trials must be 1-{cap or 2000} on your plan '{tenant.plan.code}'.",
            {"metric": "trials_per_job", "limit": cap},
            status=400 if cap is None or n_trials < 1 else 429,
        )
    if timeout_seconds is not None and not 10 <= timeout_seconds <= settings.CELERY_TASK_SOFT_TIME_LIMIT - 120:
        raise ApplicationError(
            "invalid_budget", f"timeout_seconds must be 10-{settings.CELERY_TASK_SOFT_TIME_LIMIT - 120}."
        )
    if deploy_to not in (None, CHALLENGER):
        raise ApplicationError(
            "invalid_alias", "deploy_to may only be 'challenger' (production is deployed by a person)."
        )
    fs = fs_selectors.feature_set_get(ref=feature_set)
    instrument = md_selectors.instrument_get(symbol=symbol)
    timeframe = timeframe or md_selectors.only_timeframe(instrument=instrument, hint="say which timeframe to train on")
    stats = md_selectors.bars_statistics(instrument=instrument, timeframe=timeframe) if timeframe else None
    if not stats or not stats.get("rows"):
        raise ApplicationError(
            "no_bars", f"{instrument.symbol} has no {timeframe} bars; import data first.", {"timeframe": timeframe}
        )
    if start and end and start >= end:
        raise ApplicationError("invalid_range", "start must be before end.")
    if RegisteredModel.objects.filter(name=name).first() is None:
        limits.count_check(tenant, "models", RegisteredModel.objects.count())
    params = {
        "symbol": instrument.symbol,
        "timeframe": timeframe,
        "feature_set": fs.ref,
        "start": start.isoformat() if start else None,
        "end": end.isoformat() if end else None,
        "target": spec.to_json() if spec is not None else target,
        "families": families,
        "n_trials": n_trials,
        "timeout_seconds": timeout_seconds,
        "fee_bps": fee_bps,
        "deploy_to": deploy_to,
    }
    limits.limit_check(tenant, "training_jobs_per_month")
    with transaction.atomic():
        if ml_sequence.windowed(families):
            params["feature_set"] = sequence_feature_set(fs, actor).ref
        job = TrainingJob.objects.create(
            model_name=name,
            params=params,
            idempotency_key=idempotency_key or None,
            n_trials=n_trials,
            created_by=actor_display(actor),
            message="queued",
        )
        audit_record(actor, "training_job.created", job, {"model": name, **params})
        if enqueue:
            transaction.on_commit(lambda: job_enqueue(job))
    return job, True


def sequence_feature_set(fs, actor=None):
    """The feature set a sequence model (:mod:`..ml.sequence`) trains on: ``fs`` itself when every
    column already has lags ``1..MAX_WINDOW-1``, else ``<name>-seq``, ``fs`` with those lags added
    (created once, idempotently: the same spec is the same version). The version then records that
    feature set, so the live path computes whole windows with no extra plumbing."""
    from features.services import feature_set_create

    try:
        ml_sequence.window_layout(list(fs.columns))
        return fs
    except ApplicationError:
        pass
    window = ml_sequence.MAX_WINDOW
    derived, _ = feature_set_create(
        name=f"{fs.name[:60]}-seq",
        spec=ml_sequence.spec_with_lags(fs.spec, window),
        description=f"{fs.ref} with lags 1-{window - 1} on every feature (sequence models)",
        base_timeframe=fs.base_timeframe,
        actor=actor,
    )
    return derived


def job_enqueue(job: TrainingJob) -> None:
    from ..tasks import train_model

    train_model.delay(str(job.pk))


def training_job_cancel(*, job: TrainingJob, actor=None) -> TrainingJob:
    if job.finished:
        raise ApplicationError("job_finished", f"The job already {job.state}; nothing to cancel.", status=409)
    with transaction.atomic():
        TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=True)
        if job.state == JobState.QUEUED:  # not picked up yet: it stops here
            TrainingJob.objects.filter(pk=job.pk, state=JobState.QUEUED).update(
                state=JobState.CANCELLED, finished_at=timezone.now(), message="cancelled before it started"
            )
        audit_record(actor, "training_job.cancel_requested", job, {"model": job.model_name})
    job.refresh_from_db()
    _publish(job)
    return job


# --- run -----------------------------------------------------------------------------------------


def _lock_key(job_id) -> int:
    return zlib.crc32(f"{connection.schema_name}:training:{job_id}".encode()) - 2**31


def training_job_run(*, job_id, echo=None) -> str:
    """Run (or resume) one job to its end. Safe to call any number of times for the same job.
    ``echo(percent, message)`` also receives progress (the CLI prints it)."""
    key = _lock_key(job_id)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not cur.fetchone()[0]:
            return "running elsewhere"
    try:
        return _run_locked(job_id, echo)
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", [key])


def _run_locked(job_id, echo=None) -> str:
    job = TrainingJob.objects.filter(pk=job_id).first()
    if job is None:
        return "gone"
    if job.state in FINISHED_STATES:
        return job.state
    existing = getattr(job, "model_version", None)
    if existing is not None:  # the version was stored but the run died before saying so
        _finish(job, JobState.SUCCEEDED, f"stored {existing.ref}")
        return job.state
    if job.cancel_requested:
        _finish(job, JobState.CANCELLED, "cancelled")
        return job.state
    job.attempts += 1
    job.state = JobState.RUNNING
    job.started_at = job.started_at or timezone.now()
    job.heartbeat_at = timezone.now()
    job.message = "loading data" if job.attempts == 1 else f"resuming (attempt {job.attempts})"
    _log(job, job.message)
    job.save()
    _publish(job)
    progress = _Progress(job, echo)
    try:
        version = _train(job, progress)
    except Cancelled:
        _finish(job, JobState.CANCELLED, "cancelled")
    except ApplicationError as exc:
        _fail(job, exc.message)
    except Exception as exc:  # a bug or a resource problem: recorded on the job, and raised for the logs
        log.exception("training job %s failed", job.pk)
        _fail(job, f"internal error: {type(exc).__name__}: {exc}"[:500])
    else:
        _finish(job, JobState.SUCCEEDED, f"stored {version.ref}" + (" (no edge)" if version.no_edge else ""))
    _meter_trials(job)
    return job.state


def _meter_trials(job: TrainingJob) -> None:
    """Bill the trials the job ran (this attempt's and any before: metered once, when it ends)."""
    from tenants import metering
    from tenants.selectors import tenant_current

    if job.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED) and job.trials_done:
        metering.units_add(tenant_current(), "training_trial", job.trials_done)


def _train(job: TrainingJob, progress: _Progress):
    from features import selectors as fs_selectors

    from ..ml.train import train

    p = job.params
    if rl_training.is_rl(p["target"]):
        return rl_training.train_rl(job, progress)
    X, close, atr, instrument, fs = training_data(p)
    progress.step(5, f"{len(X):,} rows × {X.shape[1]} features of {instrument.symbol} {p['timeframe']}")
    result = train(
        X,
        close,
        TargetSpec.from_json(p["target"]),
        families=p["families"],
        n_trials=p["n_trials"],
        timeout=p.get("timeout_seconds"),
        atr=atr,
        storage=optuna_storage(),
        study_name=f"{connection.schema_name}.{job.pk}",
        fee_bps=p.get("fee_bps", 10.0),
        progress=progress,
        should_stop=progress.cancelled,
    )
    if progress.cancelled(force=True):
        raise Cancelled()
    progress.step(96, "storing the version")
    from ..ml import artifacts

    with transaction.atomic():
        actor = _starter(job)
        model = model_get_or_create(name=job.model_name, actor=actor)
        if not model.recipe:
            model.recipe = {k: v for k, v in p.items() if k not in ("start", "end")}
            model.save(update_fields=["recipe"])
        version = version_create(
            model=model,
            training_job=job,
            artifact=artifacts.dump(result.bundle),
            task=TargetSpec.from_json(p["target"]).task,
            target=p["target"],
            feature_set=fs_selectors.feature_set_get(ref=p["feature_set"]),
            feature_names=list(result.feature_names),
            symbol=instrument.symbol,
            timeframe=p["timeframe"],
            train_start=result.train_start,
            train_end=result.train_end,
            rows_used=result.rows_used,
            data_fingerprint=result.fingerprint,
            params=result.params,
            report=result.report,
            reference=reference_distribution(X[list(result.feature_names)]),
            no_edge=bool(result.report.get("no_edge", True)),
            actor=actor,
        )
        job.trials = result.trials
        job.best_score = result.best_score
        job.save(update_fields=["trials", "best_score"])
    if p.get("deploy_to") == CHALLENGER:
        try:
            model_deploy(model=model, version=version, alias=CHALLENGER, reason=f"trained by job {job.pk}")
        except ApplicationError as exc:
            _log(job, f"not deployed to challenger: {exc.message}")
    _delete_study(f"{connection.schema_name}.{job.pk}")
    return version


def _starter(job: TrainingJob):
    """Who started the job, as the audit trail must name them: ``created_by`` shows a person's
    e-mail (an editable column), the chained trail only their pseudonym, so the person is looked
    up again; an API key's audit name or a system actor is used as it is."""
    from django.contrib.auth import get_user_model

    if "@" in job.created_by:
        user = get_user_model().objects.filter(email=job.created_by).first()
        if user is not None:
            return user
    return job.created_by


def training_data(p: dict):
    """Features (over the whole stored series, then cut to the range: no value uses a later bar),
    closes and ATR(14) for the job's instrument, timeframe and date range."""
    import talib

    from features import selectors as fs_selectors
    from marketdata import selectors as md_selectors

    instrument = md_selectors.instrument_get(symbol=p["symbol"])
    fs = fs_selectors.feature_set_get(ref=p["feature_set"])
    feats = fs_selectors.stored_features(instrument=instrument, timeframe=p["timeframe"], fs=fs)
    bars = md_selectors.bars_frame(instrument=instrument, timeframe=p["timeframe"], limit=fs_selectors.HISTORY_MAX)
    mask = np.ones(len(bars), dtype=bool)
    if p.get("start"):
        mask &= bars.index >= pd.Timestamp(p["start"])
    if p.get("end"):
        mask &= bars.index <= pd.Timestamp(p["end"])
    # a bar the live feed appended after the features were read has none stored yet: left out
    mask &= bars.index.isin(feats.index)
    atr = talib.ATR(bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy(), 14)
    X = feats.loc[bars.index[mask]]
    if len(X) < 200:
        raise ApplicationError(
            "not_enough_data",
            f"{len(X)} bars of {instrument.symbol} {p['timeframe']} in the range; training needs at least 200.",
        )
    return X, bars["close"].to_numpy()[mask], atr[mask], instrument, fs


def reference_distribution(X: pd.DataFrame, bins: int = 10) -> dict:
    """Per feature: decile edges of the training data and the share of rows in each bin (for PSI)."""
    out = {}
    for col in X.columns:
        x = X[col].to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        if len(x) < bins:
            continue
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
        out[col] = {"edges": edges.tolist(), "shares": (counts / counts.sum()).tolist()}
    return out


class _Progress:
    """The ``progress``/``should_stop`` callbacks of the search: job fields and the WebSocket group
    are updated at most once a second (and at the end); the cancel flag is read at most once a second."""

    def __init__(self, job: TrainingJob, echo=None):
        self.job = job
        self.echo = echo
        self._flushed = 0.0
        self._checked = 0.0
        self._cancel = False
        self._t0 = time.monotonic()

    def step(self, percent: int, message: str) -> None:
        self.job.percent = max(self.job.percent, percent)
        self.job.message = message[:200]
        _log(self.job, message)
        self._flush(force=True)

    def __call__(self, trials_done: int, n_trials: int, best_score, message: str) -> None:
        job = self.job
        job.trials_done, job.n_trials, job.best_score = trials_done, n_trials, best_score
        job.percent = max(job.percent, min(95, 5 + int(90 * trials_done / max(n_trials, 1))))
        elapsed = time.monotonic() - self._t0
        job.eta_seconds = int(elapsed / trials_done * (n_trials - trials_done)) if trials_done else None
        job.message = message[:200]
        _log(job, message)
        self._flush(force=trials_done >= n_trials)

    def _flush(self, force: bool = False) -> None:
        if self.echo is not None:
            self.echo(self.job.percent, self.job.message)
        now = time.monotonic()
        if not force and now - self._flushed < 1.0:
            return
        self._flushed = now
        job = self.job
        job.heartbeat_at = timezone.now()
        TrainingJob.objects.filter(pk=job.pk).update(
            percent=job.percent,
            trials_done=job.trials_done,
            n_trials=job.n_trials,
            best_score=job.best_score,
            eta_seconds=job.eta_seconds,
            message=job.message,
            log=job.log,
            heartbeat_at=job.heartbeat_at,
        )
        _publish(job)

    def cancelled(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not self._cancel and (force or now - self._checked >= 1.0):
            self._checked = now
            self._cancel = TrainingJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists()
        return self._cancel


def _log(job: TrainingJob, line: str) -> None:
    stamp = timezone.now().strftime("%H:%M:%S")
    lines = (job.log.splitlines() if job.log else []) + [f"{stamp} {line}"]
    job.log = "\n".join(lines[-LOG_LINES:])


def _finish(job: TrainingJob, state: str, message: str) -> None:
    job.state = state
    job.message = message[:200]
    job.finished_at = timezone.now()
    if state == JobState.SUCCEEDED:
        job.percent = 100
    _log(job, message)
    job.save()
    _publish(job)
    if state in (JobState.SUCCEEDED, JobState.FAILED):
        from notifications.services import emit

        version = getattr(job, "model_version", None) if state == JobState.SUCCEEDED else None
        emit(
            "training.finished" if state == JobState.SUCCEEDED else "training.failed",
            {"job_id": str(job.pk), "model": job.model_name, "message": job.message, "trials": job.trials_done,
             "version": getattr(version, "version", None)},
            dedupe_key=f"training:{job.pk}:{state}",
        )  # fmt: skip


def _fail(job: TrainingJob, error: str) -> None:
    job.error = error
    _finish(job, JobState.FAILED, f"failed: {error}"[:200])
    model = RegisteredModel.objects.filter(name=job.model_name).first()
    if model is not None:
        ModelAlert.objects.create(
            model=model,
            kind=ModelAlert.Kind.TRAINING_FAILED,
            message=f"Training job {job.pk} failed: {error}"[:500],
            details={"job": str(job.pk)},
        )


def job_payload(job: TrainingJob) -> dict:
    version = getattr(job, "model_version", None) if job.state == JobState.SUCCEEDED else None
    return {
        "id": str(job.pk),
        "model": job.model_name,
        "state": job.state,
        "percent": job.percent,
        "trials_done": job.trials_done,
        "n_trials": job.n_trials,
        "best_score": job.best_score,
        "eta_seconds": job.eta_seconds,
        "message": job.message,
        "version": version.version if version else None,
    }


def _publish(job: TrainingJob) -> None:
    """Push the job's progress to the tenant's ``training`` WebSocket group (best effort)."""
    try:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(
                f"{connection.schema_name}.training", {"type": "training.progress", "job": job_payload(job)}
            )
    except Exception:  # progress is advisory: a Redis hiccup must not fail a training job
        log.warning("could not publish progress of job %s", job.pk, exc_info=True)


# --- reaping and retraining -----------------------------------------------------------------------


def training_jobs_reap() -> int:
    """Re-queue running jobs whose worker is gone (no heartbeat, and nobody holds the job's lock)."""
    stale_before = timezone.now() - dt.timedelta(seconds=settings.TRAINING_JOB_STALE_S)
    stale = TrainingJob.objects.filter(state=JobState.RUNNING, heartbeat_at__lt=stale_before)
    queued = 0
    for job in stale:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [_lock_key(job.pk)])
            free = cur.fetchone()[0]
            if free:
                cur.execute("SELECT pg_advisory_unlock(%s)", [_lock_key(job.pk)])
        if free:
            job_enqueue(job)
            queued += 1
    return queued


def model_retrain(*, tenant, model: RegisteredModel, actor=None, reason: str = "on demand") -> TrainingJob:
    """A new job with the model's recipe on all data up to now; its version goes to ``challenger``."""
    recipe = model.recipe or {}
    if not recipe:
        raise ApplicationError("no_recipe", f"{model.name} has never been trained here; start a training job.")
    job, _ = training_job_create(
        tenant=tenant,
        actor=actor,
        model_name=model.name,
        symbol=recipe["symbol"],
        feature_set=recipe["feature_set"].partition("@")[0],
        timeframe=recipe["timeframe"],
        target=recipe["target"],
        families=recipe["families"],
        n_trials=recipe["n_trials"],
        timeout_seconds=recipe.get("timeout_seconds"),
        fee_bps=recipe.get("fee_bps", 10.0),
        deploy_to=CHALLENGER,
    )
    RegisteredModel.objects.filter(pk=model.pk).update(last_retrain_at=timezone.now())
    audit_record(actor, "model.retrain", model, {"job": str(job.pk), "reason": reason})
    return job


# --- Optuna storage ------------------------------------------------------------------------------

_storage = None


def optuna_storage():
    """Optuna's tables in their own schema of this database, through SQLAlchemy (psycopg 3)."""
    global _storage
    if _storage is None:
        import optuna
        import sqlalchemy
        from sqlalchemy.engine import URL

        db = connection.settings_dict
        schema = settings.OPTUNA_SCHEMA
        # the connection's own options too: as the app role when it takes it with `-c role=`
        query = {"options": f"{(db.get('OPTIONS') or {}).get('options', '')} -csearch_path={schema}".strip()}
        host = db.get("HOST") or None
        if host and host.startswith("/"):
            query["host"] = host
            host = None
        url = URL.create(
            "postgresql+psycopg",
            username=db.get("USER") or None,
            password=db.get("PASSWORD") or None,
            host=host,
            port=int(db["PORT"]) if db.get("PORT") and host else None,
            database=db["NAME"],
            query=query,
        )
        # on its own connection, committed at once (a Django transaction may be open here)
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as conn:  # ensure_db_roles creates it for the app role, which may not
            if (
                conn.execute(sqlalchemy.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).first()
                is None
            ):
                conn.execute(sqlalchemy.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        engine.dispose()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _storage = optuna.storages.RDBStorage(
            url.render_as_string(hide_password=False), engine_kwargs={"pool_pre_ping": True, "pool_size": 2}
        )
    return _storage


def _delete_study(name: str) -> None:
    import optuna

    try:
        optuna.delete_study(study_name=name, storage=optuna_storage())
    except KeyError:
        pass
