from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError
from api.schema import ERRORS
from marketdata.models import TIMEFRAME_SECONDS
from tenants.permissions import READ, WRITE

from .. import selectors, services
from ..models import Anomaly, BatchJob


class _RiskQuery(serializers.Serializer):
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAME_SECONDS), required=False)
    window = serializers.IntegerField(min_value=selectors.MIN_BARS, max_value=100_000, default=selectors.DEFAULT_WINDOW)


_RISK_PARAMS = [
    OpenApiParameter("timeframe", str, enum=list(TIMEFRAME_SECONDS), description="bars' timeframe (else the only one)"),
    OpenApiParameter("window", int, description=f"the most recent bars used ({selectors.MIN_BARS}-100000)"),
]


class InstrumentRiskApi(APIView):
    """Multi-factor risk of one instrument over its latest bars: annualised volatility, historical
    and Gaussian VaR/CVaR at 95 and 99 %, beta against ``?benchmark=``, max drawdown and liquidity
    (average dollar volume, Amihud illiquidity); ``method`` states how each is computed."""

    access = {"GET": READ}

    class QuerySerializer(_RiskQuery):
        benchmark = serializers.CharField(max_length=32, required=False)
        drawdown_points = serializers.IntegerField(min_value=0, max_value=1000, default=0)

    @extend_schema(
        operation_id="risk_instrument_retrieve",
        parameters=[
            *_RISK_PARAMS,
            OpenApiParameter("benchmark", str, description="benchmark instrument's symbol for beta"),
            OpenApiParameter("drawdown_points", int, description="also return the drawdown curve in ~N points"),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request, symbol: str):
        q = self.QuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        return Response(selectors.instrument_risk(symbol=symbol, **q.validated_data))


class PortfolioRiskApi(APIView):
    """Risk of the paper ledger's open positions as held now: P&L per bar over shared bar times,
    VaR/CVaR as a fraction of gross exposure and in money, volatility, drawdown of the P&L curve."""

    access = {"GET": READ}

    @extend_schema(operation_id="risk_portfolio_retrieve", parameters=_RISK_PARAMS,
                   responses={200: OpenApiTypes.OBJECT, **ERRORS})  # fmt: skip
    def get(self, request):
        q = _RiskQuery(data=request.query_params)
        q.is_valid(raise_exception=True)
        return Response(selectors.portfolio_risk(**q.validated_data))


# --- anomalies -----------------------------------------------------------------------------------


def _choice(value: str, choices, code: str, field: str) -> str:
    if value not in choices:
        raise ApplicationError(
            code, f"{field} must be one of {', '.join(choices)}.", {field: value, "choices": list(choices)}
        )
    return value


class AnomalyListApi(APIView):
    """Detected anomalies, newest first (``?symbol=``, ``?kind=``, ``?limit=``)."""

    access = {"GET": READ}

    class QuerySerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=32, required=False)
        kind = serializers.CharField(max_length=20, required=False)
        limit = serializers.IntegerField(min_value=1, max_value=500, default=100)

    @extend_schema(
        operation_id="anomalies_list",
        parameters=[
            OpenApiParameter("symbol", str),
            OpenApiParameter("kind", str, enum=list(Anomaly.Kind.values)),
            OpenApiParameter("limit", int, description="1-500 (default 100)"),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        q = self.QuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        v = q.validated_data
        if v.get("kind"):
            _choice(v["kind"], Anomaly.Kind.values, "invalid_kind", "kind")
        rows = selectors.anomaly_list(symbol=v.get("symbol"), kind=v.get("kind"))[: v["limit"]]
        return Response({"anomalies": [selectors.anomaly_dict(a) for a in rows]})


class _AnomalyParams(serializers.Serializer):
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAME_SECONDS), required=False)
    window = serializers.IntegerField(min_value=services.MIN_ANOMALY_BARS, max_value=100_000, default=500)
    threshold = serializers.FloatField(min_value=1.0, max_value=50.0, default=5.0)
    method = serializers.CharField(default="robust_z", help_text="robust_z or isolation_forest")
    contamination = serializers.FloatField(min_value=0.001, max_value=0.2, default=0.01)

    def validate_method(self, value):
        return _choice(value, services.ANOMALY_METHODS, "invalid_method", "method")


class AnomalyDetectApi(APIView):
    """Run detection now: on a symbol's bars (robust z of log returns and volumes, or an
    IsolationForest), with ``"stream": "decisions"`` on the decision stream (decisions per
    bucket and their mean confidence), or with ``"stream": "usage"`` on the tenant's API usage
    (requests per bucket and their error share). New anomalies are stored once and emitted as
    ``anomaly.detected``."""

    access = {"POST": WRITE}

    class InputSerializer(_AnomalyParams):
        symbol = serializers.CharField(max_length=32, required=False)
        stream = serializers.CharField(default="bars", help_text="bars, decisions or usage")
        bucket = serializers.CharField(default="1h", help_text="decisions and usage: 1h or 1d")

        def validate(self, data):
            _choice(data["stream"], ("bars", "decisions", "usage"), "invalid_stream", "stream")
            if data["stream"] == "bars" and not data.get("symbol"):
                raise ApplicationError("symbol_required", "Bars' anomalies need a symbol.", {"field": "symbol"})
            if data["stream"] in ("decisions", "usage"):
                _choice(data["bucket"], ("1h", "1d"), "invalid_bucket", "bucket")
            return data

    @extend_schema(operation_id="anomalies_detect", request=InputSerializer,
                   responses={200: OpenApiTypes.OBJECT, **ERRORS})  # fmt: skip
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        stream = v.pop("stream")
        if stream == "decisions":
            out = services.decision_anomalies_detect(symbol=v.get("symbol"), bucket=v["bucket"], window=v["window"],
                                                     threshold=v["threshold"])  # fmt: skip
        elif stream == "usage":
            out = services.usage_anomalies_detect(bucket=v["bucket"], window=v["window"], threshold=v["threshold"])
        else:
            v.pop("bucket")
            out = services.bar_anomalies_detect(**v)
        out["anomalies"] = [selectors.anomaly_dict(a) for a in out["anomalies"]]
        return Response(out)


# --- forecast and valuation ----------------------------------------------------------------------


class _ForecastParams(serializers.Serializer):
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAME_SECONDS), required=False)
    window = serializers.IntegerField(min_value=selectors.FORECAST_MIN_BARS, max_value=20_000, default=1000)
    horizon = serializers.IntegerField(min_value=1, max_value=20, default=1)
    level = serializers.FloatField(min_value=0.5, max_value=0.99, default=0.9)


class ForecastApi(APIView):
    """The next ``horizon`` bars' log return with a ``level`` interval (linear quantile regression)
    and, next to it, that interval's out-of-sample coverage against a naive unconditional one."""

    access = {"GET": READ}

    @extend_schema(
        operation_id="forecast_retrieve",
        parameters=[
            OpenApiParameter("timeframe", str, enum=list(TIMEFRAME_SECONDS)),
            OpenApiParameter("window", int, description=f"bars used ({selectors.FORECAST_MIN_BARS}-20000)"),
            OpenApiParameter("horizon", int, description="bars ahead (1-20)"),
            OpenApiParameter("level", float, description="interval's nominal coverage (0.5-0.99)"),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request, symbol: str):
        q = _ForecastParams(data=request.query_params)
        q.is_valid(raise_exception=True)
        return Response(selectors.instrument_forecast(symbol=symbol, **q.validated_data))


class ValuationApi(APIView):
    """Relative valuation from posted fundamentals: P/E and P/B against the peers' medians, the
    implied fair value and the discount or premium of the price to it (``method`` says how)."""

    access = {"GET": READ}

    @extend_schema(operation_id="valuation_retrieve", responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request, symbol: str):
        return Response(selectors.instrument_valuation(symbol=symbol))


class FundamentalsApi(APIView):
    """Post an instrument's fundamentals (replacing earlier ones): shares outstanding, trailing
    earnings, book value, dividends, sector."""

    access = {"POST": WRITE}

    class InputSerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=32)
        sector = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
        shares_outstanding = serializers.FloatField()
        earnings = serializers.FloatField()
        book_value = serializers.FloatField()
        dividends = serializers.FloatField(min_value=0.0, default=0.0)
        as_of = serializers.DateField(required=False, allow_null=True, default=None)

    @extend_schema(operation_id="fundamentals_create", request=InputSerializer,
                   responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT, **ERRORS})  # fmt: skip
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fund, created = services.fundamentals_upsert(**data.validated_data)
        body = {
            "symbol": fund.symbol, "sector": fund.sector, "shares_outstanding": fund.shares_outstanding,
            "earnings": fund.earnings, "book_value": fund.book_value, "dividends": fund.dividends,
            "as_of": fund.as_of.isoformat() if fund.as_of else None, "created": created,
        }  # fmt: skip
        return Response(body, status=201 if created else 200)


# --- batch jobs ----------------------------------------------------------------------------------

_BATCH_PARAMS = {
    "risk": _RiskQuery,
    "forecast": _ForecastParams,
    "anomaly": _AnomalyParams,
    "valuation": serializers.Serializer,
}


def batch_dict(job: BatchJob, *, results: bool = True) -> dict:
    out = {
        "id": job.pk, "analysis": job.analysis, "status": job.status, "percent": job.percent,
        "symbols": len(job.symbols), "done": job.done, "failed": job.failed, "params": job.params,
        "created_at": job.created_at.isoformat(), "created_by": job.created_by,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "seconds": job.seconds, "error": job.error,
    }  # fmt: skip
    if results:
        out["results"] = job.results
    return out


class BatchCreateApi(APIView):
    """Queue one analysis (``risk``, ``anomaly``, ``forecast`` or ``valuation``) over up to 1,000
    instruments on Celery; ``params`` are the single endpoint's. Poll ``GET /batch/{id}/``."""

    access = {"POST": WRITE}

    class InputSerializer(serializers.Serializer):
        analysis = serializers.CharField(help_text="risk, anomaly, forecast or valuation")
        symbols = serializers.ListField(child=serializers.CharField(max_length=32), min_length=1,
                                        max_length=services.BATCH_MAX_SYMBOLS)  # fmt: skip
        params = serializers.DictField(required=False, default=dict)

    @extend_schema(operation_id="batch_create", request=InputSerializer,
                   responses={202: OpenApiTypes.OBJECT, **ERRORS})  # fmt: skip
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        analysis = _choice(v["analysis"], list(_BATCH_PARAMS), "invalid_analysis", "analysis")
        allowed = sorted(_BATCH_PARAMS[analysis]().fields)
        unknown = sorted(set(v["params"]) - set(allowed))
        if unknown:
            raise ApplicationError(
                "unknown_param",
                f"{analysis} takes no parameter {', '.join(unknown)}.",
                {"params": unknown, "allowed": allowed},
            )
        params = _BATCH_PARAMS[analysis](data=v["params"])
        if not params.is_valid():
            raise ApplicationError("invalid_params", "The analysis' parameters are invalid; see details.",
                                   {"params": params.errors})  # fmt: skip
        job = services.batch_create(analysis=analysis, symbols=v["symbols"], params=dict(params.validated_data),
                                    created_by=str(getattr(request.user, "pk", "") or "api-key"))  # fmt: skip
        return Response(batch_dict(job, results=False), status=202)


class BatchDetailApi(APIView):
    """A batch job's status, percent done and per-symbol results (``?results=false`` leaves them out)."""

    access = {"GET": READ}

    @extend_schema(
        operation_id="batch_retrieve",
        parameters=[OpenApiParameter("results", bool, description="include per-symbol results (default true)")],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request, batch_id: int):
        job = selectors.batch_get(batch_id=batch_id)
        return Response(batch_dict(job, results=request.query_params.get("results", "true").lower() != "false"))
