"""AutoML training jobs and the model registry over REST (seeds: train-user-model,
training-status/:jobId, user-models, predict, deploy-ai-model, automl-recommendations, retrain)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError
from api.pagination import CreatedCursorPagination
from api.params import query_flag
from api.schema import ERRORS
from marketdata.models import Timeframe
from tenants.permissions import MANAGE, READ, WRITE

from .. import drift, selectors, services, serving
from ..ml import families as ml_families
from ..models import CircuitState, JobState, ModelAlert, ModelVersion, RegisteredModel, TrainingJob


class TrainingJobSerializer(serializers.ModelSerializer):
    version = serializers.SerializerMethodField()
    log_tail = serializers.SerializerMethodField()

    class Meta:
        model = TrainingJob
        fields = (
            "id",
            "model_name",
            "state",
            "percent",
            "trials_done",
            "n_trials",
            "best_score",
            "eta_seconds",
            "message",
            "error",
            "params",
            "attempts",
            "cancel_requested",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "version",
            "log_tail",
        )

    def get_version(self, obj) -> int | None:
        v = getattr(obj, "model_version", None)
        return v.version if v is not None else None

    def get_log_tail(self, obj) -> list[str]:
        if "log" in obj.get_deferred_fields():
            return []
        return obj.log.splitlines()[-20:]


class TrainingJobDetailSerializer(TrainingJobSerializer):
    class Meta(TrainingJobSerializer.Meta):
        fields = TrainingJobSerializer.Meta.fields + ("trials",)


class TargetSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["direction", "ternary", "return", "rl"],
        default="direction",
        help_text="What the model learns. `rl`: a reinforcement-learning trading policy (fields `algo`, "
        "`positions`, `n_lags`; `n_trials` is then the number of training episodes, at most 200), evaluated "
        "walk-forward out of sample against buy & hold and flat.",
    )
    horizon = serializers.IntegerField(min_value=1, max_value=500, default=1)
    dead_band = serializers.FloatField(min_value=0, default=0.0)
    dead_band_unit = serializers.ChoiceField(choices=["pct", "atr"], default="pct")
    algo = serializers.ChoiceField(
        choices=["q_learning", "dqn", "actor_critic"], required=False, help_text="RL only (default q_learning)."
    )
    positions = serializers.ChoiceField(
        choices=["long_short", "long_flat"], required=False, help_text="RL only: positions {-1,0,1} or {0,1}."
    )
    n_lags = serializers.IntegerField(min_value=1, max_value=6, required=False, help_text="RL only: lagged returns.")

    RL_FIELDS = ("algo", "positions", "n_lags")

    def validate(self, attrs):
        if attrs.get("kind") == "rl":
            return {"kind": "rl", **{k: attrs[k] for k in self.RL_FIELDS if k in attrs}}
        return {k: v for k, v in attrs.items() if k not in self.RL_FIELDS}


class TrainingRecipeSerializer(serializers.Serializer):
    """What to train on and how: a training job's request, and a workflow's train step."""

    model = serializers.SlugField(max_length=64, help_text="Registered model name; created on first training.")
    symbol = serializers.CharField(max_length=32)
    timeframe = serializers.ChoiceField(
        choices=Timeframe.choices, required=False, help_text="Needed when the symbol has several."
    )
    feature_set = serializers.CharField(default="default", help_text="name or name@version")
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)
    target = TargetSerializer(required=False)
    families = serializers.ListField(
        child=serializers.ChoiceField(choices=list(ml_families.FAMILIES)), required=False, min_length=1
    )
    n_trials = serializers.IntegerField(min_value=1, default=30)
    timeout_seconds = serializers.IntegerField(min_value=10, required=False)
    fee_bps = serializers.FloatField(min_value=0, max_value=500, default=10.0)


class TrainingJobListCreateApi(APIView):
    """Start an AutoML training job (seed ``train-user-model``) or list jobs, newest first."""

    access = {"GET": READ, "POST": WRITE}
    pagination_class = CreatedCursorPagination

    class InputSerializer(TrainingRecipeSerializer):
        deploy_to = serializers.ChoiceField(choices=["challenger"], required=False)
        idempotency_key = serializers.CharField(max_length=100, required=False)

    @extend_schema(
        operation_id="training_jobs_list",
        parameters=[OpenApiParameter("model", str, required=False), OpenApiParameter("state", str, required=False)],
        responses={200: TrainingJobSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        state = request.query_params.get("state") or None
        if state and state not in JobState.values:
            raise ApplicationError("invalid_state", f"state is one of {', '.join(JobState.values)}.")
        paginator = self.pagination_class()
        qs = selectors.job_list(model_name=request.query_params.get("model"), state=state)
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(TrainingJobSerializer(page, many=True).data)

    @extend_schema(
        operation_id="training_jobs_create",
        request=InputSerializer,
        responses={201: TrainingJobSerializer, 200: TrainingJobSerializer, **ERRORS},
        description="Queues the job; poll `GET /training-jobs/{id}/` or listen on `ws/training/`. The same "
        "`idempotency_key` (or `Idempotency-Key` header) returns the first job (200) instead of a new one.",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        v["idempotency_key"] = v.get("idempotency_key") or request.headers.get("Idempotency-Key") or None
        job, created = services.training_job_create(
            tenant=request.tenant, actor=request.user, model_name=v.pop("model"), **v
        )
        return Response(TrainingJobSerializer(job).data, status=201 if created else 200)


class TrainingJobDetailApi(APIView):
    """State, percent, trials done, best score, ETA and log tail (seed ``training-status/:jobId``)."""

    access = {"GET": READ}

    @extend_schema(operation_id="training_jobs_retrieve", responses={200: TrainingJobDetailSerializer, **ERRORS})
    def get(self, request, job_id):
        return Response(TrainingJobDetailSerializer(selectors.job_get(job_id=job_id)).data)


class TrainingJobCancelApi(APIView):
    access = {"POST": WRITE}

    @extend_schema(operation_id="training_jobs_cancel", request=None, responses={200: TrainingJobSerializer, **ERRORS})
    def post(self, request, job_id):
        job = services.training_job_cancel(job=selectors.job_get(job_id=job_id), actor=request.user)
        return Response(TrainingJobSerializer(job).data)


class RecommendationsApi(APIView):
    """Suggested model families, trial budget and horizons for an instrument's data (seed
    ``automl-recommendations``), from its size and this tenant's past runs."""

    access = {"GET": READ}

    @extend_schema(
        operation_id="automl_recommendations",
        parameters=[OpenApiParameter("symbol", str, required=True), OpenApiParameter("timeframe", str, required=True)],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        from features import selectors as fs_selectors
        from marketdata import selectors as md_selectors

        from ..ml.train import recommend

        symbol, timeframe = request.query_params.get("symbol", ""), request.query_params.get("timeframe", "")
        if timeframe not in Timeframe.values:
            raise ApplicationError("invalid_timeframe", f"timeframe is one of {', '.join(Timeframe.values)}.")
        instrument = md_selectors.instrument_get(symbol=symbol)
        rows = md_selectors.bars_statistics(instrument=instrument, timeframe=timeframe).get("rows", 0)
        n_features = len(fs_selectors.feature_set_get(ref="default").columns)
        past = [
            {"model": v.model.name, "no_edge": v.no_edge, "target": v.target, "families": [v.params.get("family")]}
            for v in ModelVersion.objects.filter(symbol=instrument.symbol, timeframe=timeframe)
            .select_related("model")
            .defer("artifact", "report", "reference")[:50]
        ]
        return Response(
            {
                "symbol": instrument.symbol,
                "timeframe": timeframe,
                "rows": rows,
                **recommend(rows, n_features, timeframe, past),
            }
        )


# --- registry ------------------------------------------------------------------------------------


class VersionSerializer(serializers.ModelSerializer):
    feature_set = serializers.CharField(source="feature_set.ref")
    pruned = serializers.SerializerMethodField()
    summary = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = (
            "version",
            "status",
            "task",
            "target",
            "feature_set",
            "symbol",
            "timeframe",
            "train_start",
            "train_end",
            "rows_used",
            "no_edge",
            "circuit",
            "circuit_reason",
            "circuit_changed_at",
            "artifact_sha256",
            "artifact_bytes",
            "pruned",
            "data_fingerprint",
            "code_version",
            "created_by",
            "created_at",
            "summary",
        )

    def get_pruned(self, obj) -> bool:
        return obj.pruned_at is not None

    def get_summary(self, obj) -> dict:
        if "report" in obj.get_deferred_fields():
            return {}
        oos = (obj.report or {}).get("oos") or {}
        return {k: oos.get(k) for k in ("accuracy", "balanced_accuracy", "log_loss", "roc_auc", "rmse")}


class VersionDetailSerializer(VersionSerializer):
    class Meta(VersionSerializer.Meta):
        fields = VersionSerializer.Meta.fields + ("params", "report", "feature_names", "drift", "training_job")


class ModelSerializer(serializers.ModelSerializer):
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = (
            "name",
            "description",
            "aliases",
            "deploy_policy",
            "traffic",
            "retrain_every_days",
            "retrain_on_drift",
            "last_retrain_at",
            "recipe",
            "created_by",
            "created_at",
        )

    def get_aliases(self, obj) -> dict[str, int]:
        return {a.name: a.version.version for a in obj.aliases.all()}


class ModelListApi(APIView):
    """The tenant's registered models with their aliases (seed ``user-models``)."""

    access = {"GET": READ}

    @extend_schema(operation_id="models_list", responses={200: ModelSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(ModelSerializer(selectors.model_list(), many=True).data)


class ModelDetailApi(APIView):
    """A model: versions, aliases and their history. PATCH sets its deploy policy, traffic split
    and retraining schedule (admins)."""

    access = {"GET": READ, "PATCH": MANAGE}

    class InputSerializer(serializers.Serializer):
        description = serializers.CharField(max_length=500, required=False)
        deploy_policy = serializers.DictField(
            required=False,
            help_text='{"gate": "edge"|"thresholds"|"none", "min_accuracy": 0.8, '
            '"rollback_min_accuracy": 0.5, "rollback_window": 100}',
        )
        traffic = serializers.DictField(required=False, help_text='{"challenger_percent": 10}')
        retrain_every_days = serializers.IntegerField(min_value=1, max_value=365, required=False, allow_null=True)
        retrain_on_drift = serializers.BooleanField(required=False, help_text="Retrain into challenger on drift.")

    @extend_schema(operation_id="models_retrieve", responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request, name: str):
        model = selectors.model_get(name=name)
        return Response(
            {
                **ModelSerializer(model).data,
                "versions": VersionSerializer(selectors.version_list(model=model), many=True).data,
                "history": [
                    {
                        "alias": e.alias,
                        "action": e.action,
                        "from_version": e.from_version,
                        "to_version": e.to_version,
                        "reason": e.reason,
                        "actor": e.actor,
                        "at": e.at.isoformat(),
                    }
                    for e in selectors.alias_history(model=model)
                ],
            }
        )

    @extend_schema(operation_id="models_update", request=InputSerializer, responses={200: ModelSerializer, **ERRORS})
    def patch(self, request, name: str):
        model = selectors.model_get(name=name)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        model = services.model_settings_update(
            model=model,
            actor=request.user,
            deploy_policy=v.get("deploy_policy"),
            traffic=v.get("traffic"),
            retrain_every_days=v["retrain_every_days"] if "retrain_every_days" in v else False,
            retrain_on_drift=v.get("retrain_on_drift"),
            description=v.get("description"),
        )
        return Response(ModelSerializer(model).data)


class VersionDetailApi(APIView):
    """One version with its honest report: OOS metrics next to naive baselines, significance,
    trading readout net of fees, calibration, confusion matrix, importance."""

    access = {"GET": READ}

    @extend_schema(operation_id="model_versions_retrieve", responses={200: VersionDetailSerializer, **ERRORS})
    def get(self, request, name: str, version: int):
        model = selectors.model_get(name=name)
        return Response(VersionDetailSerializer(selectors.version_get(model=model, version=version)).data)


class PredictApi(APIView):
    """Predict with a version or an alias (default ``production``; with a traffic split, the
    ``request_key`` decides the arm, the same key always the same arm): posted feature rows, or the
    latest closed bar of the model's instrument."""

    access = {"POST": READ}

    class InputSerializer(serializers.Serializer):
        alias = serializers.SlugField(required=False)
        version = serializers.IntegerField(min_value=1, required=False)
        rows = serializers.ListField(child=serializers.DictField(), required=False, max_length=10_000)
        symbol = serializers.CharField(
            required=False, help_text="Predict the latest bar of this symbol instead of rows."
        )
        request_key = serializers.CharField(required=False, max_length=200)

        def validate(self, attrs):
            if attrs.get("alias") and attrs.get("version"):
                raise serializers.ValidationError({"version": "Give an alias or a version, not both."})
            if attrs.get("rows") and attrs.get("symbol"):
                raise serializers.ValidationError({"rows": "Send rows or a symbol, not both."})
            return attrs

    @extend_schema(
        operation_id="models_predict", request=InputSerializer, responses={200: OpenApiTypes.OBJECT, **ERRORS}
    )
    def post(self, request, name: str):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        model = selectors.model_get(name=name)
        version = serving.version_resolve(
            model=model, alias=v.get("alias"), version=v.get("version"), request_key=v.get("request_key")
        )
        if v.get("rows"):
            return Response({"version": version.ref, "predictions": serving.predict(version=version, rows=v["rows"])})
        return Response(
            {"version": version.ref, "predictions": [serving.predict_latest(version=version, symbol=v.get("symbol"))]}
        )


class DeployApi(APIView):
    """Point an alias (default ``production``) at a version (seed ``deploy-ai-model``). Production is
    gated by the model's deploy policy: by default the version must beat its baselines significantly."""

    access = {"POST": MANAGE}

    class InputSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1)
        alias = serializers.SlugField(max_length=32, default="production")
        reason = serializers.CharField(max_length=500, required=False, default="")

    @extend_schema(operation_id="models_deploy", request=InputSerializer, responses={200: ModelSerializer, **ERRORS})
    def post(self, request, name: str):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        model = selectors.model_get(name=name)
        version = selectors.version_get(model=model, version=v["version"])
        services.model_deploy(model=model, version=version, alias=v["alias"], reason=v["reason"], actor=request.user)
        return Response(ModelSerializer(selectors.model_get(name=name)).data)


class RollbackApi(APIView):
    """Move ``production`` back to a named version, or to the one before the last move."""

    access = {"POST": MANAGE}

    class InputSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1, required=False)
        reason = serializers.CharField(max_length=500, required=False, default="")

    @extend_schema(operation_id="models_rollback", request=InputSerializer, responses={200: ModelSerializer, **ERRORS})
    def post(self, request, name: str):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        model = selectors.model_get(name=name)
        version = selectors.version_get(model=model, version=v["version"]) if v.get("version") else None
        services.model_rollback(model=model, version=version, reason=v["reason"], actor=request.user)
        return Response(ModelSerializer(selectors.model_get(name=name)).data)


class RetrainApi(APIView):
    """Retrain with the model's recipe on all data up to now; the new version goes to ``challenger``."""

    access = {"POST": WRITE}

    @extend_schema(operation_id="models_retrain", request=None, responses={201: TrainingJobSerializer, **ERRORS})
    def post(self, request, name: str):
        model = selectors.model_get(name=name)
        job = services.model_retrain(tenant=request.tenant, model=model, actor=request.user)
        return Response(TrainingJobSerializer(job).data, status=201)


class DriftApi(APIView):
    """Check a version's input drift now (PSI per feature, recent bars vs its training data)."""

    access = {"POST": WRITE}

    @extend_schema(operation_id="model_versions_drift", request=None, responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def post(self, request, name: str, version: int):
        model = selectors.model_get(name=name)
        return Response(drift.drift_check(version=selectors.version_get(model=model, version=version)))


class CircuitApi(APIView):
    """Open, half-open or close a version's circuit breaker (an open challenger gets no traffic)."""

    access = {"POST": MANAGE}

    class InputSerializer(serializers.Serializer):
        state = serializers.ChoiceField(choices=CircuitState.choices)
        reason = serializers.CharField(max_length=500, required=False, default="")

    @extend_schema(
        operation_id="model_versions_circuit", request=InputSerializer, responses={200: VersionSerializer, **ERRORS}
    )
    def post(self, request, name: str, version: int):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = selectors.model_get(name=name)
        found = selectors.version_get(model=model, version=version)
        services.circuit_set(version=found, actor=request.user, **data.validated_data)
        return Response(VersionSerializer(found).data)


class AlertListApi(APIView):
    """Model alerts (drift, failed training), newest first."""

    access = {"GET": READ}

    class OutputSerializer(serializers.ModelSerializer):
        model = serializers.CharField(source="model.name")
        version = serializers.IntegerField(source="version.version", allow_null=True, default=None)

        class Meta:
            model = ModelAlert
            fields = ("id", "model", "version", "kind", "severity", "message", "details", "created_at", "resolved_at")

    @extend_schema(
        operation_id="model_alerts_list",
        parameters=[OpenApiParameter("open", bool, required=False)],
        responses={200: OutputSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        open_only = query_flag(request, "open")
        return Response(self.OutputSerializer(selectors.alert_list(open_only=open_only)[:200], many=True).data)


class AbTestApi(APIView):
    """The A/B test of a model: production and challenger side by side on live outcomes (accuracy,
    95 % interval, test against a coin and of the difference) and a verdict."""

    access = {"GET": READ}

    @extend_schema(
        operation_id="models_ab_retrieve",
        parameters=[OpenApiParameter("window", int, description="Last N live calls per arm (default 500).")],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request, name: str):
        from intelligence import learning

        raw = request.query_params.get("window", "500")
        if not raw.isdigit() or not 10 <= int(raw) <= 100_000:
            raise ApplicationError("invalid_window", "window is a whole number of calls, 10-100000.")
        return Response(learning.ab_metrics(selectors.model_get(name=name), window=int(raw)))


class AbActionInput(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, default="")


class _AbEndApi(APIView):
    access = {"POST": MANAGE}
    end = ""  # the intelligence.learning function that ends the test

    def post(self, request, name: str):
        from intelligence import learning

        data = AbActionInput(data=request.data)
        data.is_valid(raise_exception=True)
        getattr(learning, self.end)(model=selectors.model_get(name=name), actor=request.user, **data.validated_data)
        return Response(ModelSerializer(selectors.model_get(name=name)).data)


@extend_schema_view(
    post=extend_schema(
        operation_id="models_ab_promote", request=AbActionInput, responses={200: ModelSerializer, **ERRORS}
    )
)
class AbPromoteApi(_AbEndApi):
    """End the A/B test by promoting the challenger to production (through the deploy gate)."""

    end = "ab_promote"


@extend_schema_view(
    post=extend_schema(
        operation_id="models_ab_abort", request=AbActionInput, responses={200: ModelSerializer, **ERRORS}
    )
)
class AbAbortApi(_AbEndApi):
    """End the A/B test: the challenger alias is removed and all traffic returns to production."""

    end = "ab_abort"
