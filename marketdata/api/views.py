"""Market data over REST: instruments, bar ranges, statistics, validate and import."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError
from api.parsers import FastJSONParser
from api.schema import ERRORS
from tenants import limits
from tenants.permissions import READ, WRITE

from .. import selectors, services
from ..models import AssetClass, Instrument, Timeframe
from ..validation import frame_from_records, read_upload

BARS_MAX = 10_000


class CoverageSerializer(serializers.Serializer):
    timeframe = serializers.ChoiceField(choices=Timeframe.choices)
    bars = serializers.IntegerField()
    first = serializers.DateTimeField()
    last = serializers.DateTimeField()


class InstrumentSerializer(serializers.ModelSerializer):
    coverage = CoverageSerializer(many=True, read_only=True)

    class Meta:
        model = Instrument
        fields = ("id", "symbol", "name", "asset_class", "exchange", "tick_size", "currency", "created_at", "coverage")
        read_only_fields = ("id", "created_at", "coverage")


def _with_coverage(instruments: list[Instrument]) -> list[Instrument]:
    cov = selectors.coverage(instrument_ids=[i.pk for i in instruments])
    for i in instruments:
        i.coverage = cov.get(i.pk, [])
    return instruments


class InstrumentListCreateApi(APIView):
    """The tenant's instruments with the bars stored per timeframe."""

    access = {"GET": READ, "POST": WRITE}

    class InputSerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=32)
        name = serializers.CharField(max_length=120, required=False, default="")
        asset_class = serializers.ChoiceField(choices=AssetClass.choices, default=AssetClass.OTHER)
        exchange = serializers.CharField(max_length=32, required=False, default="")
        tick_size = serializers.DecimalField(max_digits=20, decimal_places=10, min_value=0, default="0.01")
        currency = serializers.CharField(max_length=8, default="USD")

    @extend_schema(operation_id="instruments_list", responses={200: InstrumentSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(InstrumentSerializer(_with_coverage(list(selectors.instrument_list())), many=True).data)

    @extend_schema(
        operation_id="instruments_create", request=InputSerializer, responses={201: InstrumentSerializer, **ERRORS}
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        instrument = services.instrument_create(tenant=request.tenant, actor=request.user, **data.validated_data)
        return Response(InstrumentSerializer(_with_coverage([instrument])[0]).data, status=201)


class InstrumentDetailApi(APIView):
    access = {"GET": READ, "PATCH": WRITE}

    class PatchSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=120, required=False)
        asset_class = serializers.ChoiceField(choices=AssetClass.choices, required=False)
        exchange = serializers.CharField(max_length=32, required=False, allow_blank=True)
        tick_size = serializers.DecimalField(max_digits=20, decimal_places=10, min_value=0, required=False)
        currency = serializers.CharField(max_length=8, required=False)

    @extend_schema(operation_id="instruments_retrieve", responses={200: InstrumentSerializer, **ERRORS})
    def get(self, request, instrument_id: int):
        instrument = selectors.instrument_get(pk=instrument_id)
        return Response(InstrumentSerializer(_with_coverage([instrument])[0]).data)

    @extend_schema(
        operation_id="instruments_update", request=PatchSerializer, responses={200: InstrumentSerializer, **ERRORS}
    )
    def patch(self, request, instrument_id: int):
        instrument = selectors.instrument_get(pk=instrument_id)
        data = self.PatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.instrument_update(instrument=instrument, actor=request.user, **data.validated_data)
        return Response(InstrumentSerializer(_with_coverage([instrument])[0]).data)


class BarSerializer(serializers.Serializer):
    ts = serializers.DateTimeField()
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.FloatField()


class RangeQuerySerializer(serializers.Serializer):
    timeframe = serializers.ChoiceField(choices=Timeframe.choices)
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=BARS_MAX, default=1000)


class InstrumentBarsApi(APIView):
    """Bars of one timeframe, oldest first: the most recent ``limit`` within [start, end]."""

    access = {"GET": READ}

    class OutputSerializer(serializers.Serializer):
        symbol = serializers.CharField()
        timeframe = serializers.CharField()
        count = serializers.IntegerField()
        bars = BarSerializer(many=True)

    @extend_schema(
        operation_id="instruments_bars",
        parameters=[RangeQuerySerializer],
        responses={200: OutputSerializer, **ERRORS},
    )
    def get(self, request, instrument_id: int):
        instrument = selectors.instrument_get(pk=instrument_id)
        q = RangeQuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        frame = selectors.bars_frame(instrument=instrument, **q.validated_data)
        bars = [
            {"ts": ts, "open": o, "high": h, "low": lo, "close": c, "volume": v}
            for ts, o, h, lo, c, v in zip(
                frame.index, frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"], strict=True
            )
        ]
        out = {
            "symbol": instrument.symbol,
            "timeframe": q.validated_data["timeframe"],
            "count": len(bars),
            "bars": bars,
        }
        return Response(self.OutputSerializer(out).data)


class InstrumentStatisticsApi(APIView):
    """Rows, range, gaps and missing bars, and the distribution of log returns."""

    access = {"GET": READ}

    class ReturnsSerializer(serializers.Serializer):
        count = serializers.IntegerField()
        mean = serializers.FloatField()
        std = serializers.FloatField()
        annualised_volatility = serializers.FloatField()
        skew = serializers.FloatField()
        kurtosis = serializers.FloatField()
        min = serializers.FloatField()
        max = serializers.FloatField()
        percentiles = serializers.DictField(child=serializers.FloatField())

    class OutputSerializer(serializers.Serializer):
        symbol = serializers.CharField()
        timeframe = serializers.CharField()
        rows = serializers.IntegerField()
        start = serializers.DateTimeField(allow_null=True)
        end = serializers.DateTimeField(allow_null=True)
        expected_bars = serializers.IntegerField()
        missing_bars = serializers.IntegerField()
        gap_count = serializers.IntegerField()
        largest_gap_bars = serializers.IntegerField()
        returns = serializers.DictField(required=False, help_text="Absent with fewer than 3 bars.")

    @extend_schema(
        operation_id="instruments_statistics",
        parameters=[OpenApiParameter("timeframe", str, enum=Timeframe.values, required=True)],
        responses={200: OutputSerializer, **ERRORS},
    )
    def get(self, request, instrument_id: int):
        instrument = selectors.instrument_get(pk=instrument_id)
        timeframe = request.query_params.get("timeframe", "")
        if timeframe not in Timeframe.values:
            raise ApplicationError(
                "invalid_timeframe", "Pass ?timeframe= one of the stored timeframes.", {"choices": Timeframe.values}
            )
        stats = selectors.bars_statistics(instrument=instrument, timeframe=timeframe)
        out = self.OutputSerializer(stats).data
        if "returns" in stats:
            out["returns"] = self.ReturnsSerializer(stats["returns"]).data
        return Response(out)


# --- validate / import -------------------------------------------------------------------------


class BarsPayloadSerializer(serializers.Serializer):
    """Either a file (multipart: CSV or Parquet) or ``bars`` (JSON: a list of objects)."""

    timeframe = serializers.ChoiceField(choices=Timeframe.choices)
    file = serializers.FileField(required=False, help_text="CSV (timestamp,open,high,low,close,volume) or Parquet.")
    bars = serializers.ListField(child=serializers.DictField(), required=False, help_text="Bars as JSON objects.")

    def validate(self, attrs):
        if bool(attrs.get("file")) == bool(attrs.get("bars")):
            raise serializers.ValidationError({"file": "Send exactly one of `file` (multipart) or `bars` (JSON)."})
        return attrs


def _raw_frame(request, data: dict):
    upload = data.get("file")
    if upload is None:
        return frame_from_records(data["bars"])
    cap_mb = limits.plan_limit(request.tenant, "upload_mb")
    if cap_mb is not None and upload.size > cap_mb * 1024 * 1024:
        raise ApplicationError(
            "file_too_large",
            f"The file is {upload.size / 1048576:.1f} MB; your plan accepts {cap_mb} MB per upload. Split it.",
            {"size_bytes": upload.size, "limit_mb": cap_mb},
            status=413,
        )
    return read_upload(upload.name, upload.read())


class ValidationReportSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    rows = serializers.IntegerField()
    error_count = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.DictField())
    errors_truncated = serializers.BooleanField()
    start = serializers.DateTimeField(allow_null=True)
    end = serializers.DateTimeField(allow_null=True)
    gap_count = serializers.IntegerField()
    missing_bars = serializers.IntegerField()
    gaps = serializers.ListField(child=serializers.DictField())


class DataValidateApi(APIView):
    """Check a file or posted bars without importing anything: every error with row, column, code."""

    access = {"POST": READ}
    parser_classes = [FastJSONParser, MultiPartParser]

    @extend_schema(
        operation_id="data_validate",
        request={"application/json": BarsPayloadSerializer, "multipart/form-data": BarsPayloadSerializer},
        responses={200: ValidationReportSerializer, **ERRORS},
    )
    def post(self, request):
        data = BarsPayloadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        raw = _raw_frame(request, data.validated_data)
        report = services.validation_run(tenant=request.tenant, raw=raw, timeframe=data.validated_data["timeframe"])
        return Response(ValidationReportSerializer(report.as_dict()).data)


class DataImportApi(APIView):
    """Import bars of one symbol and timeframe: all rows or none. An unknown symbol becomes an
    instrument with defaults you can edit."""

    access = {"POST": WRITE}
    parser_classes = [FastJSONParser, MultiPartParser]

    class InputSerializer(BarsPayloadSerializer):
        symbol = serializers.CharField(max_length=32)
        on_conflict = serializers.ChoiceField(choices=services.ON_CONFLICT, default="error")
        asset_class = serializers.ChoiceField(choices=AssetClass.choices, required=False)

    class OutputSerializer(serializers.Serializer):
        symbol = serializers.CharField()
        timeframe = serializers.CharField()
        rows = serializers.IntegerField()
        inserted = serializers.IntegerField()
        skipped = serializers.IntegerField()
        replaced = serializers.IntegerField()
        instrument_created = serializers.BooleanField()
        start = serializers.DateTimeField()
        end = serializers.DateTimeField()
        gap_count = serializers.IntegerField()
        missing_bars = serializers.IntegerField()
        gaps = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        operation_id="data_import",
        request={"application/json": InputSerializer, "multipart/form-data": InputSerializer},
        responses={201: OutputSerializer, **ERRORS},
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        result = services.bars_import(
            tenant=request.tenant,
            symbol=v["symbol"],
            timeframe=v["timeframe"],
            raw=_raw_frame(request, v),
            on_conflict=v["on_conflict"],
            asset_class=v.get("asset_class"),
            actor=request.user,
        )
        return Response(self.OutputSerializer(result.as_dict()).data, status=201)
