"""Decisions over REST (seed: make-decision), the paper ledger, and the engine's status
(seed: ensemble-status)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError
from api.schema import ERRORS
from marketdata.models import Timeframe
from tenants import metering
from tenants.models import Role, Scope
from tenants.permissions import MANAGE, READ, Access

from .. import selectors, services
from ..ledger import position_state

TRADE = Access(role=Role.ANALYST, scope=Scope.TRADE)


class DecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    symbol = serializers.CharField()
    timeframe = serializers.CharField()
    ts = serializers.DateTimeField()
    action = serializers.ChoiceField(choices=["BUY", "SELL", "HOLD"])
    confidence = serializers.FloatField()
    size = serializers.FloatField()
    votes = serializers.ListField(child=serializers.DictField())
    weights = serializers.DictField(child=serializers.FloatField())
    explanation = serializers.CharField()
    conservative = serializers.BooleanField()
    vetoed_by = serializers.CharField(allow_null=True)
    flow = serializers.CharField()
    model_version = serializers.CharField(allow_null=True)
    latency_ms = serializers.FloatField()
    created_at = serializers.DateTimeField()
    outcome = serializers.DictField(allow_null=True)


class DecisionListCreateApi(APIView):
    """``POST``: decide now for a symbol's latest stored bar, or for posted bars (a what-if: the
    paper ledger is not touched). ``GET``: recent decisions, or those after an id (resume a feed)."""

    access = {"GET": READ, "POST": TRADE}

    class InputSerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=32)
        timeframe = serializers.ChoiceField(choices=Timeframe.choices, required=False)
        bars = serializers.ListField(child=serializers.DictField(), required=False, max_length=20_000)

    @extend_schema(
        operation_id="decisions_list",
        parameters=[
            OpenApiParameter("symbol", str, required=False),
            OpenApiParameter("after", int, required=False, description="Only decisions after this id, oldest first."),
            OpenApiParameter("limit", int, required=False),
        ],
        responses={200: DecisionSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        after = request.query_params.get("after")
        limit = request.query_params.get("limit", "100")
        if (after is not None and not after.isdigit()) or not limit.isdigit() or not 1 <= int(limit) <= 1000:
            raise ApplicationError("invalid_input", "after is a decision id and limit 1-1000.")
        qs = selectors.decision_list(
            symbol=request.query_params.get("symbol"), after=int(after) if after else None, limit=int(limit)
        )
        return Response([selectors.decision_payload(d) for d in qs])

    @extend_schema(
        operation_id="decisions_create", request=InputSerializer, responses={201: DecisionSerializer, **ERRORS}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        decision = services.decision_make(
            tenant=request.tenant,
            symbol=v["symbol"],
            timeframe=v.get("timeframe"),
            bars=v.get("bars"),
            actor=request.user,
        )
        return Response(selectors.decision_payload(decision), status=201)


class DecisionDetailApi(APIView):
    access = {"GET": READ}

    @extend_schema(operation_id="decisions_retrieve", responses={200: DecisionSerializer, **ERRORS})
    def get(self, request, decision_id: int):
        return Response(selectors.decision_payload(selectors.decision_get(decision_id=decision_id)))


class PositionSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    qty = serializers.FloatField()
    avg_price = serializers.FloatField()
    last_price = serializers.FloatField()
    realized_pnl = serializers.FloatField()
    fees = serializers.FloatField()
    unrealised_pnl = serializers.FloatField()
    exposure = serializers.FloatField()
    drawdown = serializers.FloatField()
    opened_at = serializers.DateTimeField(allow_null=True)


class PositionListApi(APIView):
    """The paper ledger: one position per instrument, with P&L, exposure and drawdown."""

    access = {"GET": READ}

    @extend_schema(operation_id="positions_list", responses={200: PositionSerializer(many=True), **ERRORS})
    def get(self, request):
        cfg = services.pipeline_load(request.tenant).ledger
        return Response(
            [
                {
                    "symbol": p.symbol,
                    "qty": p.qty,
                    "avg_price": p.avg_price,
                    "last_price": p.last_price,
                    "realized_pnl": p.realized_pnl,
                    "fees": p.fees,
                    **{
                        k: v
                        for k, v in position_state(p, cfg).items()
                        if k in ("unrealised_pnl", "exposure", "drawdown")
                    },
                    "opened_at": p.opened_at,
                }
                for p in selectors.position_list()
            ]
        )


class EnsembleStatusApi(APIView):
    """The active flow, its agents and their learned weights, conservative mode, calibration, and
    the models serving the ML agent (production/challenger split, circuit breakers, live accuracy)."""

    access = {"GET": READ}

    @extend_schema(operation_id="ensemble_status", responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request):
        pipeline = services.pipeline_load(request.tenant)
        from ..learning import models_status

        return Response(
            {
                "flow": pipeline.flow_ref,
                "agents": pipeline.flow["agents"],
                **pipeline.engine.status(),
                "models": models_status(),
            }
        )


class DataStreamStatusApi(APIView):
    """The live stream of this tenant (seed ``data-stream-status``): events waiting, consumer groups
    with their pending entries and lag, decisions per second over the last minute, and the last
    stored bar per instrument and timeframe."""

    access = {"GET": READ}

    @extend_schema(operation_id="data_stream_status", responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request):
        import datetime as dt

        from django.utils import timezone

        from marketdata import selectors as md_selectors

        from ..models import Decision
        from ..stream import stream_status

        since = timezone.now() - dt.timedelta(minutes=1)
        recent = Decision.objects.filter(source=Decision.Source.STREAM, created_at__gte=since).count()
        coverage = md_selectors.coverage()
        instruments = {i.pk: i.symbol for i in md_selectors.instrument_list()}
        last_bars = [
            {"symbol": instruments.get(iid), "timeframe": c["timeframe"], "last": c["last"], "bars": c["bars"]}
            for iid, covs in coverage.items()
            for c in covs
        ]
        return Response(
            {"stream": stream_status(), "decisions_per_second": round(recent / 60, 3), "last_bars": last_bars}
        )


class InferenceApi(APIView):
    """The production model's prediction for a symbol's latest closed bar (seed
    ``real-time-inference``), with the version that answered and the time it took."""

    access = {"POST": READ}

    class InputSerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=32)
        timeframe = serializers.ChoiceField(choices=Timeframe.choices, required=False)
        request_key = serializers.CharField(max_length=200, required=False)

    @extend_schema(
        operation_id="inference_create", request=InputSerializer, responses={200: OpenApiTypes.OBJECT, **ERRORS}
    )
    def post(self, request):
        import time

        from models_registry import serving

        started = time.perf_counter()
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        symbol = v["symbol"].strip().upper()
        pipeline = services.pipeline_load(request.tenant)
        version = None
        for timeframe in [v["timeframe"]] if v.get("timeframe") else ["1d", "4h", "1h", "30m", "15m", "5m", "1m"]:
            version = services.model_version_for(
                symbol=symbol, timeframe=timeframe, flow=pipeline.flow, request_key=v.get("request_key") or symbol
            )
            if version is not None:
                break
        if version is None:
            raise ApplicationError(
                "no_model", f"No production model for {symbol}; train one and deploy it.", status=404
            )
        result = serving.predict_latest(version=version, symbol=symbol)
        metering.units_add(request.tenant, "prediction")
        return Response({**result, "latency_ms": round((time.perf_counter() - started) * 1000, 3)})


ENVIRONMENT = serializers.ChoiceField(
    choices=["dev", "staging", "prod"], default="prod", help_text="prod: what the live stream and REST decisions run"
)


class FlowSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    ref = serializers.CharField()
    active = serializers.BooleanField(help_text="in force in prod (the live environment)")
    environments = serializers.SerializerMethodField(help_text="the environments whose configuration runs it")
    config = serializers.DictField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_environments(self, obj) -> list[str]:
        in_force = self.context.get("in_force")
        if in_force is None:
            in_force = self.context["in_force"] = selectors.flows_in_force()
        return in_force.get(obj.ref, [])


class FlowListCreateApi(APIView):
    """The tenant's decision flows (versioned; each environment runs one). ``POST`` stores a config
    as the next version of ``name`` and, by default, makes it the flow of ``environment`` (prod)
    (admins)."""

    access = {"GET": READ, "POST": MANAGE}

    class InputSerializer(serializers.Serializer):
        name = serializers.SlugField(max_length=64)
        config = serializers.DictField(help_text="Agents, settings, weights, thresholds; see GET /flows/presets/.")
        activate = serializers.BooleanField(default=True)
        environment = ENVIRONMENT

    @extend_schema(operation_id="flows_list", responses={200: FlowSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(FlowSerializer(selectors.flow_list(), many=True, context={}).data)

    @extend_schema(operation_id="flows_create", request=InputSerializer, responses={201: FlowSerializer, **ERRORS})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        flow = services.flow_create(tenant=request.tenant, actor=request.user, **data.validated_data)
        return Response(FlowSerializer(flow, context={}).data, status=201)


class FlowPresetsApi(APIView):
    """Ready-made flow configs: ``default`` (min confidence 0.55, reachable on real data) and
    ``conservative`` (the seed's 0.75), each with only the agents the tenant's plan allows."""

    access = {"GET": READ}

    @extend_schema(operation_id="flows_presets", responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request):
        return Response(selectors.flow_presets(tenant=request.tenant))


class FlowDetailApi(APIView):
    """One version of a flow, with its config as stored (defaults fill in what it leaves out)."""

    access = {"GET": READ}

    @extend_schema(operation_id="flows_retrieve", responses={200: FlowSerializer, **ERRORS})
    def get(self, request, flow_name: str, flow_version: int):
        return Response(FlowSerializer(selectors.flow_get(name=flow_name, version=flow_version), context={}).data)


class FlowDiffApi(APIView):
    """What differs between this version of a flow and another (``against``: a version of the same
    flow, or any ``name@version``; default: the previous version), setting by setting, with the
    defaults filled in."""

    access = {"GET": READ}

    @extend_schema(
        operation_id="flows_diff",
        parameters=[OpenApiParameter("against", str, required=False, description="a version number or name@version")],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request, flow_name: str, flow_version: int):
        row = selectors.flow_get(name=flow_name, version=flow_version)
        against = (request.query_params.get("against") or "").strip()
        if not against:
            other = selectors.flow_get(name=flow_name, version=flow_version - 1) if flow_version > 1 else None
        elif against.isdigit():
            other = selectors.flow_get(name=flow_name, version=int(against))
        else:
            other = services.flow_by_ref(against)
            if other is None:
                raise ApplicationError(
                    "invalid_flow_ref", "against is a version number or name@version of a stored flow."
                )
        return Response(
            {"from": other.ref if other else None, "to": row.ref, "changes": selectors.flow_diff(other, row)}
        )


class FlowActivateApi(APIView):
    """Make a stored version the flow an environment runs (default prod, the live one): roll back
    to an older one, or switch to a version stored with ``activate: false`` (admins). It is a new
    version of that environment's configuration, pushed to the running stream without a restart;
    the learned weights are kept per flow name. A version naming an agent the plan no longer
    includes is refused with ``agent_not_in_plan``."""

    access = {"POST": MANAGE}

    class InputSerializer(serializers.Serializer):
        environment = ENVIRONMENT

    @extend_schema(operation_id="flows_activate", request=InputSerializer, responses={200: FlowSerializer, **ERRORS})
    def post(self, request, flow_name: str, flow_version: int):
        data = self.InputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        flow = services.flow_activate(
            tenant=request.tenant, name=flow_name, version=flow_version, actor=request.user, **data.validated_data
        )
        return Response(FlowSerializer(flow, context={}).data)


class PlanRefSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class AgentSerializer(serializers.Serializer):
    name = serializers.CharField()
    tier = serializers.CharField()
    directional = serializers.BooleanField()
    summary = serializers.CharField(allow_blank=True)
    allowed = serializers.BooleanField(help_text="Whether the tenant's plan includes this agent.")
    needs_plan = PlanRefSerializer(allow_null=True, help_text="The cheapest plan that includes it, when not allowed.")


class AgentListApi(APIView):
    """The decision agents a flow may name, and which of them the tenant's plan includes."""

    access = {"GET": READ}

    @extend_schema(operation_id="agents_list", responses={200: AgentSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(AgentSerializer(selectors.agent_catalog(tenant=request.tenant), many=True).data)


class WeightSnapshotSerializer(serializers.Serializer):
    created_at = serializers.DateTimeField(source="at")
    flow = serializers.CharField()
    symbol = serializers.CharField()
    weights = serializers.DictField(child=serializers.FloatField(), help_text="Agent -> normalised weight.")
    accuracy = serializers.FloatField(allow_null=True, help_text="The consensus hit rate over its recent window.")


class AgentWeightsApi(APIView):
    """The agents' learned weights over time, oldest first: one snapshot per instrument each time
    decisions' outcomes resolve (the live stream records them)."""

    access = {"GET": READ}

    class QuerySerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=32, required=False, help_text="Only this instrument.")
        flow = serializers.SlugField(max_length=64, required=False, help_text="Default: the active flow.")
        limit = serializers.IntegerField(min_value=1, max_value=5000, default=500, help_text="The most recent N.")

    @extend_schema(
        operation_id="agent_weights_list",
        parameters=[QuerySerializer],
        responses={200: WeightSnapshotSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        rows = selectors.weight_history(
            symbol=q.get("symbol"), flow=q.get("flow") or selectors.flow_active_name(), limit=q["limit"]
        )
        return Response(WeightSnapshotSerializer(rows, many=True).data)
