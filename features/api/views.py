"""Feature sets and feature calculation over REST (seed: feature-set CRUD, calculate-features)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError
from api.params import query_flag
from api.renderers import FastJSONRenderer
from api.schema import ERRORS
from marketdata import selectors as md_selectors
from marketdata.models import Timeframe
from marketdata.validation import validate_records
from tenants.permissions import READ, WRITE

from .. import selectors, services
from ..engine import compute_batch
from ..indicators import REGISTRY
from ..models import FeatureSet

CALCULATE_MAX_BARS = 20_000


class FeatureSetSerializer(serializers.ModelSerializer):
    ref = serializers.CharField(read_only=True)
    locked = serializers.SerializerMethodField()

    class Meta:
        model = FeatureSet
        fields = (
            "id",
            "ref",
            "name",
            "version",
            "description",
            "spec",
            "spec_hash",
            "columns",
            "warmup",
            "base_timeframe",
            "created_by",
            "created_at",
            "locked",
        )

    def get_locked(self, obj) -> bool:
        return obj.locked_at is not None


class FeatureSetListCreateApi(APIView):
    """Every version of every feature set (``?latest=true``: the latest version of each name)."""

    access = {"GET": READ, "POST": WRITE}

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=64)
        spec = serializers.JSONField(help_text='{"features": [{"indicator": "rsi", "params": {"length": 14}}]}')
        description = serializers.CharField(max_length=500, required=False, default="")
        base_timeframe = serializers.ChoiceField(choices=Timeframe.choices, required=False, default="")

    @extend_schema(
        operation_id="feature_sets_list",
        parameters=[OpenApiParameter("latest", bool, required=False)],
        responses={200: FeatureSetSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        latest = query_flag(request, "latest")
        return Response(FeatureSetSerializer(selectors.feature_set_list(latest_only=latest), many=True).data)

    @extend_schema(
        operation_id="feature_sets_create",
        request=InputSerializer,
        responses={201: FeatureSetSerializer, 200: FeatureSetSerializer, **ERRORS},
        description="Store a spec as the next version of `name`. The same spec as the latest version "
        "returns that version (200) instead of a new one.",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fs, created = services.feature_set_create(actor=request.user, **data.validated_data)
        return Response(FeatureSetSerializer(fs).data, status=201 if created else 200)


class FeatureSetDetailApi(APIView):
    access = {"GET": READ, "DELETE": WRITE}

    @extend_schema(operation_id="feature_sets_retrieve", responses={200: FeatureSetSerializer, **ERRORS})
    def get(self, request, ref: str):
        return Response(FeatureSetSerializer(selectors.feature_set_get(ref=ref)).data)

    @extend_schema(
        operation_id="feature_sets_delete",
        responses={204: None, **ERRORS},
        description="Delete a version no model uses (409 `feature_set_locked` otherwise).",
    )
    def delete(self, request, ref: str):
        services.feature_set_delete(feature_set=selectors.feature_set_get(ref=ref), actor=request.user)
        return Response(status=204)


class FeatureSetDiffApi(APIView):
    """What changed between two versions of one feature set."""

    access = {"GET": READ}

    class OutputSerializer(serializers.Serializer):
        from_ = serializers.CharField()
        to = serializers.CharField()
        features_added = serializers.ListField(child=serializers.DictField())
        features_removed = serializers.ListField(child=serializers.DictField())
        features_changed = serializers.ListField(child=serializers.DictField())
        columns_added = serializers.ListField(child=serializers.CharField())
        columns_removed = serializers.ListField(child=serializers.CharField())
        warmup = serializers.DictField(child=serializers.IntegerField())

        def get_fields(self):
            fields = super().get_fields()
            fields["from"] = fields.pop("from_")  # "from" is a keyword in Python
            return fields

    @extend_schema(
        operation_id="feature_sets_diff",
        parameters=[
            OpenApiParameter("from", int, required=True, description="Version to compare from."),
            OpenApiParameter("to", int, required=True, description="Version to compare to."),
        ],
        responses={200: OutputSerializer, **ERRORS},
    )
    def get(self, request, ref: str):
        name = ref.partition("@")[0]
        versions = request.query_params.get("from", ""), request.query_params.get("to", "")
        if not all(v.isdigit() for v in versions):
            raise ApplicationError("invalid_input", "Pass ?from=<version>&to=<version>.", {"from": versions[0]})
        a, b = (selectors.feature_set_get(ref=f"{name}@{v}") for v in versions)
        return Response(selectors.feature_set_diff(a=a, b=b))


class IndicatorListApi(APIView):
    """The indicators a spec may use, with their parameters, defaults and outputs."""

    access = {"GET": READ}

    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField()
        summary = serializers.CharField()
        params = serializers.ListField(child=serializers.DictField())
        outputs = serializers.ListField(child=serializers.CharField())
        default_outputs = serializers.ListField(child=serializers.CharField())

    @extend_schema(operation_id="indicators_list", responses={200: OutputSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(
            [
                {
                    "name": ind.name,
                    "summary": ind.summary,
                    "params": [p.describe() for p in ind.params],
                    "outputs": list(ind.output_keys),
                    "default_outputs": list(ind.default_outputs),
                }
                for ind in REGISTRY.values()
            ]
        )


class BarListField(serializers.ListField):
    """A list of bar objects taken as parsed: the bar validation checks every row and cell, so the
    per-item field validation (≈ 10 ms for 500 bars) is skipped."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.DictField(), max_length=CALCULATE_MAX_BARS, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            self.fail("not_a_list", input_type=type(data).__name__)
        if len(data) > CALCULATE_MAX_BARS:
            self.fail("max_length", max_length=CALCULATE_MAX_BARS)
        return data


class FeaturesCalculateApi(APIView):
    """Features for stored bars of a symbol (with enough history before ``start`` for warm-up) or
    for posted bars. Rows in warm-up are null; nothing is written."""

    access = {"POST": READ}
    renderer_classes = [FastJSONRenderer]  # 5,000 floats: orjson, NaN written as null

    class InputSerializer(serializers.Serializer):
        feature_set = serializers.CharField(default="default", help_text="name or name@version")
        timeframe = serializers.ChoiceField(choices=Timeframe.choices)
        symbol = serializers.CharField(required=False, help_text="Use stored bars of this instrument …")
        start = serializers.DateTimeField(required=False)
        end = serializers.DateTimeField(required=False)
        limit = serializers.IntegerField(min_value=1, max_value=CALCULATE_MAX_BARS, default=500)
        bars = BarListField(required=False, help_text="… or these bars: a list of objects.")

        def validate(self, attrs):
            if bool(attrs.get("symbol")) == bool(attrs.get("bars")):
                raise serializers.ValidationError({"symbol": "Send exactly one of `symbol` or `bars`."})
            return attrs

    class OutputSerializer(serializers.Serializer):
        feature_set = serializers.CharField()
        timeframe = serializers.CharField()
        columns = serializers.ListField(child=serializers.CharField())
        warmup = serializers.IntegerField()
        rows = serializers.ListField(child=serializers.DictField(), help_text="ts plus one value per column")

    @extend_schema(
        operation_id="features_calculate", request=InputSerializer, responses={200: OutputSerializer, **ERRORS}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        fs = selectors.feature_set_resolve(ref=v["feature_set"])
        timeframe = v["timeframe"]
        if v.get("bars"):
            spec = selectors.feature_set_spec(fs)
            report = validate_records(v["bars"], timeframe=timeframe)
            if not report.valid:
                raise ApplicationError(
                    "invalid_data", f"{report.error_count} problem(s) in the posted bars.", report.as_dict()
                )
            features = compute_batch(report.frame, spec, timeframe, direct=True).iloc[-v["limit"] :]
        else:
            instrument = md_selectors.instrument_get(symbol=v["symbol"])
            features = selectors.stored_features(instrument=instrument, timeframe=timeframe, fs=fs)
            if v.get("end") is not None:
                features = features[features.index <= v["end"]]
            if v.get("start") is not None:  # from start onwards
                features = features[features.index >= v["start"]].iloc[: v["limit"]]
            else:  # the most recent
                features = features.iloc[-v["limit"] :]
        columns = list(features.columns)
        keys = ("ts", *columns)
        rows = [
            dict(zip(keys, (ts, *row), strict=True))
            for ts, row in zip(_iso_utc(features.index), features.to_numpy().tolist(), strict=True)
        ]
        return Response(
            {"feature_set": fs.ref, "timeframe": timeframe, "columns": columns, "warmup": fs.warmup, "rows": rows}
        )


def _iso_utc(index: pd.DatetimeIndex) -> list[str]:
    """``Timestamp.isoformat()`` of whole-second UTC stamps, vectorised (500 stamps: 0.1 ms, not 2.5 ms)."""
    if not len(index):
        return []
    seconds = index.as_unit("ns").asi8 // 1_000_000_000
    return [f"{s}+00:00" for s in np.datetime_as_string(seconds.astype("M8[s]"), unit="s").tolist()]
