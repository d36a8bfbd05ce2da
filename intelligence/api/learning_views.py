"""The learning loop over REST (seed: validate-ai-accuracy) and portfolio allocation suggestions."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError
from api.schema import ERRORS
from tenants.permissions import READ

from .. import learning, selectors


class ValidateAccuracyApi(APIView):
    """Live accuracy of the consensus, each agent and each model version over the last ``window``
    resolved decisions, against the seed targets (consensus 80 %, agent 70 %, premium agent 75 %,
    model 65 %). A target counts as met only when the 95 % interval's lower bound clears it."""

    access = {"GET": READ}

    @extend_schema(
        operation_id="validate_ai_accuracy",
        parameters=[
            OpenApiParameter("window", int, description="Last N resolved decisions (default 1000, max 100000)."),
            OpenApiParameter("symbol", str, description="One instrument only."),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        raw = request.query_params.get("window", "1000")
        if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
            raise ApplicationError("invalid_window", "window is a whole number of decisions, 1-100000.")
        symbol = (request.query_params.get("symbol") or "").strip() or None
        if symbol is not None and len(symbol) > 32:
            raise ApplicationError("invalid_symbol", "symbol is at most 32 characters.")
        return Response(learning.validate_ai_accuracy(window=int(raw), symbol=symbol))


class AllocationApi(APIView):
    """Portfolio optimisation: suggested weights across the tenant's instruments (risk parity,
    inverse volatility or mean-variance) from their stored bars, with each one's risk contribution.
    Pro plans and above (the portfolio agent)."""

    access = {"GET": READ}

    @extend_schema(
        operation_id="portfolio_allocation",
        parameters=[
            OpenApiParameter("method", str, enum=list(selectors.ALLOCATION_METHODS)),
            OpenApiParameter("timeframe", str, description="Bars the returns come from (default 1d)."),
            OpenApiParameter("lookback", int, description="Last N bars (30-5000, default 250)."),
            OpenApiParameter("symbols", str, description="Comma-separated; default: every instrument."),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        from marketdata.models import TIMEFRAME_SECONDS

        q = request.query_params
        method = q.get("method", "risk_parity")
        if method not in selectors.ALLOCATION_METHODS:
            raise ApplicationError(
                "invalid_method", f"method is one of {', '.join(selectors.ALLOCATION_METHODS)}.", {"method": method}
            )
        timeframe = q.get("timeframe", "1d")
        if timeframe not in TIMEFRAME_SECONDS:
            raise ApplicationError("invalid_timeframe", f"timeframe is one of {', '.join(TIMEFRAME_SECONDS)}.")
        raw = q.get("lookback", "250")
        if not raw.isdigit() or not 30 <= int(raw) <= 5000:
            raise ApplicationError("invalid_lookback", "lookback is a whole number of bars, 30-5000.")
        symbols = [s for s in (q.get("symbols") or "").split(",") if s.strip()] or None
        return Response(
            selectors.allocation_suggest(
                tenant=request.tenant, method=method, timeframe=timeframe, lookback=int(raw), symbols=symbols
            )
        )
