"""Backtests over REST: request one (validated, then run as a job), follow it, read its stats,
equity curve and trades (paged)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError
from api.pagination import CreatedCursorPagination
from api.schema import ERRORS
from marketdata.models import Timeframe
from tenants.permissions import READ, WRITE

from .. import selectors, services
from ..engine import FILLS, SIZINGS
from ..models import BacktestRun, BacktestTrade
from ..strategies import STRATEGIES
from ..sweep import METRICS, SEARCHES


class BacktestSerializer(serializers.ModelSerializer):
    class Meta:
        model = BacktestRun
        fields = (
            "id", "name", "strategy", "params", "broker", "grid", "metric", "search", "n_trials", "symbol",
            "timeframe", "start", "end", "bars", "state", "percent", "message", "error", "stats", "open_trade",
            "created_by", "created_at", "started_at", "finished_at",
        )  # fmt: skip


class BacktestDetailSerializer(BacktestSerializer):
    class Meta(BacktestSerializer.Meta):
        fields = BacktestSerializer.Meta.fields + ("equity",)


class TradeSerializer(serializers.ModelSerializer):
    class Meta:
        model = BacktestTrade
        fields = ("n", "entry_time", "exit_time", "entry_price", "exit_price", "size", "pnl", "return_pct",
                  "commission", "reason")  # fmt: skip


class TradePageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    offset = serializers.IntegerField()
    results = TradeSerializer(many=True)


class BrokerSerializer(serializers.Serializer):
    cash = serializers.FloatField(min_value=1, default=10_000.0)
    commission = serializers.FloatField(default=0.0, help_text="fraction of notional per side (0.001 = 0.1 %)")
    commission_fixed = serializers.FloatField(min_value=0, default=0.0)
    spread = serializers.FloatField(min_value=0, default=0.0, help_text="fraction of price paid on entry")
    slippage_bps = serializers.FloatField(
        min_value=0, default=0.0, help_text="basis points of price, against the trader on every fill"
    )
    slippage_atr = serializers.FloatField(
        min_value=0,
        default=0.0,
        help_text="multiples of ATR(14) as of the previous bar, against the trader per fill",
    )
    fill = serializers.ChoiceField(choices=FILLS, default="next_open")
    whole_units = serializers.BooleanField(default=True)
    sizing = serializers.ChoiceField(choices=SIZINGS, default="all_in")
    fraction = serializers.FloatField(required=False)
    risk = serializers.FloatField(default=0.01)
    stop_loss = serializers.FloatField(required=False, allow_null=True)
    take_profit = serializers.FloatField(required=False, allow_null=True)
    leverage = serializers.FloatField(default=1.0)
    allow_short = serializers.BooleanField(default=True)
    close_at_end = serializers.BooleanField(default=False)


class BacktestListCreateApi(APIView):
    """Queue a backtest of a built-in strategy on a stored instrument, or list backtests."""

    access = {"GET": READ, "POST": WRITE}
    pagination_class = CreatedCursorPagination

    class InputSerializer(serializers.Serializer):
        strategy = serializers.ChoiceField(
            choices=[*STRATEGIES, "model", "rules", "consensus"],
            help_text="a built-in; 'model': a model version walk-forward; 'rules': rules over a feature set; "
            "'consensus': the live agents and consensus of the active flow, bar by bar",
        )
        params = serializers.DictField(
            required=False,
            help_text="the strategy's parameters (defaults otherwise); for 'model': model ('name' or "
            "'name@version'), window, step, expanding, threshold; for 'rules': feature_set, long, short, exit "
            "(lists of [column, op, number or column]), match (all/any); for 'consensus': use_model, environment "
            "(dev, staging or prod: the flow that environment runs; default prod), or replay=true "
            "to replay the recorded live period (the stream's decisions derived again from recorded state and "
            "compared one by one)",
        )
        symbol = serializers.CharField(max_length=32)
        timeframe = serializers.ChoiceField(choices=Timeframe.choices, required=False)
        start = serializers.DateTimeField(required=False)
        end = serializers.DateTimeField(required=False)
        broker = BrokerSerializer(required=False)
        name = serializers.CharField(max_length=120, required=False, allow_blank=True)
        grid = serializers.DictField(
            child=serializers.ListField(min_length=1), required=False,
            help_text="a sweep: values per parameter, e.g. {\"fast\": [5, 10], \"slow\": [20, 50]}; every "
            "combination is tested on the first 70 % of the bars, ranked by metric, the best re-run on the rest",
        )  # fmt: skip
        metric = serializers.ChoiceField(choices=METRICS, default="sharpe")
        search = serializers.ChoiceField(
            choices=SEARCHES,
            default="grid",
            help_text="optuna: a seeded TPE search; grid then holds [low, high] ranges",
        )
        n_trials = serializers.IntegerField(min_value=1, max_value=1000, default=100, help_text="optuna trials")

    @extend_schema(
        operation_id="backtests_list",
        parameters=[OpenApiParameter("strategy", str, required=False), OpenApiParameter("symbol", str, required=False)],
        responses={200: BacktestSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        paginator = self.pagination_class()
        qs = selectors.run_list(
            strategy=request.query_params.get("strategy"), symbol=request.query_params.get("symbol")
        )
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(BacktestSerializer(page, many=True).data)

    @extend_schema(
        operation_id="backtests_create",
        request=InputSerializer,
        responses={201: BacktestSerializer, **ERRORS},
        description="Validates the request (strategy, parameters, broker, bars in range, enough for the "
        "warm-up) and queues the run; poll `GET /backtests/{id}/` for state and percent.",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        run = services.backtest_create(
            tenant=request.tenant, actor=request.user, strategy=v["strategy"], symbol=v["symbol"],
            params=v.get("params"), broker=v.get("broker"), timeframe=v.get("timeframe"), start=v.get("start"),
            end=v.get("end"), name=v.get("name", ""), grid=v.get("grid"), metric=v["metric"],
            search=v["search"], n_trials=v["n_trials"],
        )  # fmt: skip
        return Response(BacktestSerializer(run).data, status=201)


class BacktestDetailApi(APIView):
    """State and percent while it runs; then stats (next to buy & hold, with bootstrap bands) and
    the equity curve (at most 2,000 points: time, equity, drawdown %)."""

    access = {"GET": READ}

    @extend_schema(operation_id="backtests_retrieve", responses={200: BacktestDetailSerializer, **ERRORS})
    def get(self, request, backtest_id):
        return Response(BacktestDetailSerializer(selectors.run_get(run_id=backtest_id)).data)


class BacktestTradesApi(APIView):
    """The run's closed trades in exit order, ``offset``/``limit`` paged."""

    access = {"GET": READ}

    @extend_schema(
        operation_id="backtests_trades",
        parameters=[OpenApiParameter("offset", int, required=False), OpenApiParameter("limit", int, required=False)],
        responses={200: TradePageSerializer, **ERRORS},
    )
    def get(self, request, backtest_id):
        run = selectors.run_get(run_id=backtest_id)
        offset, limit = request.query_params.get("offset", "0"), request.query_params.get("limit", "100")
        if not offset.isdigit() or not limit.isdigit() or not 1 <= int(limit) <= 1000:
            raise ApplicationError("invalid_input", "offset is >= 0 and limit 1-1000.")
        trades, total = selectors.trade_page(run=run, offset=int(offset), limit=int(limit))
        return Response({"count": total, "offset": int(offset), "results": TradeSerializer(trades, many=True).data})


class BacktestCancelApi(APIView):
    access = {"POST": WRITE}

    @extend_schema(operation_id="backtests_cancel", request=None, responses={200: BacktestSerializer, **ERRORS})
    def post(self, request, backtest_id):
        run = services.backtest_cancel(run=selectors.run_get(run_id=backtest_id), actor=request.user)
        return Response(BacktestSerializer(run).data)


class BacktestCompareApi(APIView):
    """Finished backtests side by side (2-10 ids), with the best run per figure."""

    access = {"GET": READ}

    @extend_schema(
        operation_id="backtests_compare",
        parameters=[OpenApiParameter("ids", str, required=True, description="comma-separated backtest ids")],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        import uuid

        raw = [x.strip() for x in request.query_params.get("ids", "").split(",") if x.strip()]
        try:
            ids = list(dict.fromkeys(uuid.UUID(x) for x in raw))
        except ValueError:
            raise ApplicationError("invalid_input", "ids are backtest ids separated by commas.") from None
        if not 2 <= len(ids) <= 10:
            raise ApplicationError("invalid_input", "Compare 2 to 10 backtests (ids=a,b,...).")
        runs = [selectors.run_get(run_id=i) for i in ids]
        return Response(services.backtest_compare(runs=runs))
