"""The learning loop over REST (seed: validate-ai-accuracy)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError
from api.schema import ERRORS
from tenants.permissions import READ

from .. import learning


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
