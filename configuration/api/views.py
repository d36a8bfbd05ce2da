"""``/api/v1/config/``: the tenant's configuration per environment (dev, staging, prod) — typed,
versioned, diffed, rolled back and promoted dev -> staging -> prod. ``prod`` is what the live
stream, the feed and REST decisions run; a change reaches them without a restart."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError
from api.pagination import CreatedCursorPagination
from api.schema import ERRORS
from tenants.permissions import MANAGE, READ

from .. import schema, selectors, services


class ConfigChangeSerializer(serializers.Serializer):
    path = serializers.CharField()
    to = serializers.JSONField(allow_null=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.JSONField(allow_null=True)
        return fields


class ConfigSerializer(serializers.Serializer):
    environment = serializers.CharField()
    version = serializers.IntegerField(help_text="0: nothing stored yet, the defaults are in force")
    values = serializers.DictField()
    source = serializers.CharField(allow_null=True, help_text="edit, rollback, promote or flow")
    based_on = serializers.CharField(allow_null=True, help_text="the version a rollback or promotion copied")
    comment = serializers.CharField(allow_null=True)
    created_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField(allow_null=True)


class ConfigChangedSerializer(ConfigSerializer):
    changes = ConfigChangeSerializer(many=True, help_text="what this request changed (empty: nothing did)")


class ConfigVersionSerializer(serializers.Serializer):
    environment = serializers.CharField()
    version = serializers.IntegerField()
    values = serializers.DictField()
    source = serializers.CharField()
    based_on = serializers.CharField()
    comment = serializers.CharField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()


def _current(current: selectors.Current, changes: list | None = None) -> dict:
    row = current.row
    out = {
        "environment": current.environment,
        "version": current.version,
        "values": current.values,
        "source": row.source if row else None,
        "based_on": (row.based_on or None) if row else None,
        "comment": (row.comment or None) if row else None,
        "created_by": row.created_by if row else None,
        "created_at": row.created_at if row else None,
    }
    if changes is not None:
        out["changes"] = changes
    return ConfigChangedSerializer(out).data if changes is not None else ConfigSerializer(out).data


class ConfigWriteSerializer(serializers.Serializer):
    values = serializers.DictField(help_text='settings as nested JSON, e.g. {"controls": {"max_position": 5}}')
    comment = serializers.CharField(max_length=300, required=False, allow_blank=True)
    expected_version = serializers.IntegerField(
        min_value=0, required=False, help_text="refuse (409 version_conflict) if the environment moved past it"
    )


CHANGED = {200: ConfigChangedSerializer, **ERRORS}
ENV = OpenApiParameter(
    "environment", str, OpenApiParameter.PATH, enum=list(schema.ENVIRONMENTS), description="dev, staging or prod"
)


class ConfigListApi(APIView):
    """Every environment's configuration in force."""

    access = {"GET": READ}

    @extend_schema(operation_id="config_list", responses={200: ConfigSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response([_current(c) for c in selectors.config_all()])


class ConfigSchemaApi(APIView):
    """The settings a configuration may hold: type, default, bounds and what each does."""

    access = {"GET": READ}

    @extend_schema(operation_id="config_schema", responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request):
        return Response(schema.schema_document())


class ConfigDetailApi(APIView):
    """One environment's configuration. ``PUT`` replaces it (settings left out take their
    defaults), ``PATCH`` changes only the settings given; both store a new version (admins)."""

    access = {"GET": READ, "PUT": MANAGE, "PATCH": MANAGE}

    @extend_schema(parameters=[ENV], operation_id="config_retrieve", responses={200: ConfigSerializer, **ERRORS})
    def get(self, request, environment: str):
        return Response(_current(selectors.config_current(environment)))

    def _write(self, request, environment: str, *, partial: bool):
        selectors.environment_check(environment)
        data = ConfigWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        current, changes = services.config_set(
            tenant=request.tenant, environment=environment, values=v["values"], partial=partial, actor=request.user,
            comment=v.get("comment", ""), expected_version=v.get("expected_version"),
        )  # fmt: skip
        return Response(_current(current, changes))

    @extend_schema(parameters=[ENV], operation_id="config_replace", request=ConfigWriteSerializer, responses=CHANGED)
    def put(self, request, environment: str):
        return self._write(request, environment, partial=False)

    @extend_schema(parameters=[ENV], operation_id="config_update", request=ConfigWriteSerializer, responses=CHANGED)
    def patch(self, request, environment: str):
        return self._write(request, environment, partial=True)


class ConfigVersionListApi(APIView):
    """An environment's versions, newest first."""

    access = {"GET": READ}
    pagination_class = CreatedCursorPagination

    @extend_schema(
        parameters=[ENV],
        operation_id="config_versions_list",
        responses={200: ConfigVersionSerializer(many=True), **ERRORS},
    )
    def get(self, request, environment: str):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.config_versions(environment), request, view=self)
        return paginator.get_paginated_response(ConfigVersionSerializer(page, many=True).data)


class ConfigVersionDetailApi(APIView):
    access = {"GET": READ}

    @extend_schema(
        parameters=[ENV], operation_id="config_versions_retrieve", responses={200: ConfigVersionSerializer, **ERRORS}
    )
    def get(self, request, environment: str, config_version: int):
        return Response(ConfigVersionSerializer(selectors.config_version_get(environment, config_version)).data)


class ConfigDiffApi(APIView):
    """What differs between two versions of an environment (``from``, ``to``; default: the one
    before the current, and the current), or between this environment and another (``against``)."""

    access = {"GET": READ}

    @extend_schema(
        operation_id="config_diff",
        parameters=[
            ENV,
            OpenApiParameter("from", int, required=False),
            OpenApiParameter("to", int, required=False),
            OpenApiParameter("against", str, required=False, description="another environment"),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request, environment: str):
        current = selectors.config_current(environment)
        params = request.query_params
        against = params.get("against")
        if against:
            other = selectors.config_current(against)
            changes = schema.diff(current.values, other.values)
            return Response({"from": current.ref, "to": other.ref, "changes": changes})
        try:
            to = int(params.get("to", current.version))
            frm = int(params.get("from", max(to - 1, 0)))
        except ValueError:
            raise ApplicationError("invalid_version", "from and to are version numbers (0: the defaults).") from None
        if frm < 0 or to < 0:
            raise ApplicationError("invalid_version", "from and to are version numbers (0: the defaults).")
        before = selectors.config_values_at(environment, frm)
        after = selectors.config_values_at(environment, to)
        return Response(
            {"from": f"{environment}@{frm}", "to": f"{environment}@{to}", "changes": schema.diff(before, after)}
        )


class ConfigRollbackSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)
    comment = serializers.CharField(max_length=300, required=False, allow_blank=True)


class ConfigRollbackApi(APIView):
    """Bring an older version back as the next version (admins)."""

    access = {"POST": MANAGE}

    @extend_schema(
        parameters=[ENV], operation_id="config_rollback", request=ConfigRollbackSerializer, responses=CHANGED
    )
    def post(self, request, environment: str):
        selectors.environment_check(environment)
        data = ConfigRollbackSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        current, changes = services.config_rollback(
            tenant=request.tenant, environment=environment, actor=request.user, **data.validated_data
        )
        return Response(_current(current, changes))


class ConfigPromoteSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=300, required=False, allow_blank=True)
    expected_version = serializers.IntegerField(min_value=0, required=False)


class ConfigPromoteApi(APIView):
    """Promote into this environment the configuration in force in the one before it
    (dev -> staging, staging -> prod) (admins)."""

    access = {"POST": MANAGE}

    @extend_schema(parameters=[ENV], operation_id="config_promote", request=ConfigPromoteSerializer, responses=CHANGED)
    def post(self, request, environment: str):
        selectors.environment_check(environment)
        data = ConfigPromoteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        current, changes = services.config_promote(
            tenant=request.tenant, environment=environment, actor=request.user, **data.validated_data
        )
        return Response(_current(current, changes))
