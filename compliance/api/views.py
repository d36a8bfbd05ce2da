"""Compliance over REST: a tenant's audit trail for a range (auditors verify it offline), and a
person's own GDPR export."""

from __future__ import annotations

from django.db import connection
from django.http import StreamingHttpResponse
from django_tenants.utils import schema_context
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotAuthenticated
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import ApplicationError, NotFound
from api.pagination import StrictPageSize
from api.schema import ERRORS
from tenants.authentication import ApiKeyPrincipal
from tenants.models import Membership
from tenants.permissions import MANAGE

from .. import audit_export, gdpr


class _FormatIsOurs(DefaultContentNegotiation):
    """``?format=csv|json`` chooses the export's format here, not DRF's renderer."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AuditCursorPagination(StrictPageSize, CursorPagination):
    ordering = ("id",)  # the chain's order
    page_size = 200
    page_size_query_param = "page_size"
    max_page_size = 1000


class BatchRefSerializer(serializers.Serializer):
    first_id = serializers.IntegerField()
    last_id = serializers.IntegerField()
    prev_hash = serializers.CharField()
    hash = serializers.CharField()


class BatchSerializer(BatchRefSerializer):
    ids = serializers.ListField(child=serializers.IntegerField(), help_text="sealed record ids, in order")
    digests = serializers.CharField(help_text="hex: 8 bytes per id, in the order of ids")


class AuditRecordSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(help_text='"user:<id>" (a pseudonym), "apikey:<prefix>", "system…"')
    action = serializers.CharField()
    object_type = serializers.CharField(allow_blank=True)
    object_id = serializers.CharField(allow_blank=True)
    details = serializers.DictField()


class AuditExportRecordSerializer(AuditRecordSerializer):
    batch = BatchRefSerializer(allow_null=True, help_text="the seal covering this record; null: not sealed yet")
    sealed_digest = serializers.CharField(allow_null=True, help_text="hex digest the seal holds for this record")


class AuditExportApi(APIView):
    """The tenant's audit trail in ``[start, end)`` (at most 366 days; default the last 30), in id
    order, each record with the chain batch that sealed it. ``format=json``: pages (``cursor``),
    each with the full seals its records need; ``format=csv``: the whole range streamed. Every
    export is itself audited (``audit.exported``)."""

    access = {"GET": MANAGE}
    content_negotiation_class = _FormatIsOurs

    class QuerySerializer(serializers.Serializer):
        start = serializers.CharField(required=False, allow_blank=True)
        end = serializers.CharField(required=False, allow_blank=True)
        format = serializers.ChoiceField(choices=audit_export.FORMATS, default="json")

    class PageSerializer(serializers.Serializer):
        start = serializers.DateTimeField()
        end = serializers.DateTimeField()
        next = serializers.URLField(allow_null=True)
        previous = serializers.URLField(allow_null=True)
        results = AuditExportRecordSerializer(many=True)
        batches = BatchSerializer(many=True)

    @extend_schema(
        operation_id="audit_export",
        parameters=[
            OpenApiParameter("start", str, description="ISO date or date-time (UTC if no offset); default end-30d"),
            OpenApiParameter("end", str, description="exclusive; a date means the end of that day; default now"),
            OpenApiParameter("format", str, enum=list(audit_export.FORMATS), description="default json"),
            OpenApiParameter("cursor", str, description="json: the next page's cursor"),
            OpenApiParameter("page_size", int, description="json: records per page (max 1000)"),
        ],
        responses={
            (200, "application/json"): PageSerializer,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=", ".join(audit_export.CSV_COLUMNS)),
            **ERRORS,
        },
    )
    def get(self, request):
        q = self.QuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        v = q.validated_data
        start, end = audit_export.audit_range_parse(v.get("start"), v.get("end"))
        records = audit_export.audit_records_in(start, end)
        if v["format"] == "csv":
            audit_export.audit_export_record(actor=request.user, start=start, end=end, fmt="csv", channel="api")
            schema = connection.schema_name

            def lines():  # runs after the request's tenant middleware reset the schema
                with schema_context(schema):
                    yield from audit_export.csv_lines(start, end)

            response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = (
                f'attachment; filename="audit-{request.tenant.slug}-{start:%Y%m%d}-{end:%Y%m%d}.csv"'
            )
            return response
        paginator = AuditCursorPagination()
        page = paginator.paginate_queryset(records, request, view=self)
        audit_export.audit_export_record(actor=request.user, start=start, end=end, fmt="json", channel="api")
        return Response(
            {
                "start": start.isoformat(),
                "end": end.isoformat(),
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "results": [audit_export.record_json(*row) for row in audit_export.with_batches(page)],
                "batches": audit_export.page_batches(page),
            }
        )


class PersonOnly(BasePermission):
    """A logged-in person (session or Bearer token); an API key is refused with a clear 403."""

    def has_permission(self, request, view) -> bool:
        if isinstance(request.user, ApiKeyPrincipal):
            raise ApplicationError(
                "person_required",
                "Personal data exports are for people, not API keys: call this with your session or a Bearer "
                "token from /api/v1/auth/token/.",
                status=403,
            )
        if not getattr(request.user, "is_authenticated", False):
            raise NotAuthenticated()
        tenant = getattr(request, "tenant", None)
        if tenant is not None and not Membership.objects.filter(user_id=request.user.pk, tenant=tenant).exists():
            raise NotFound()  # a token or host naming a tenant that isn't theirs: as everywhere, 404
        return True


class _MembershipSerializer(serializers.Serializer):
    tenant = serializers.CharField()
    tenant_name = serializers.CharField()
    role = serializers.CharField()
    since = serializers.DateTimeField()


class _ApiKeySerializer(serializers.Serializer):
    tenant = serializers.CharField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class _InvitationSerializer(serializers.Serializer):
    tenant = serializers.CharField()
    email = serializers.CharField()
    role = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class _RowSerializer(serializers.Serializer):
    column = serializers.CharField(help_text="app.Model.field naming the person")
    id = serializers.CharField()
    created_at = serializers.DateTimeField(allow_null=True)
    summary = serializers.CharField()


class _ProfileSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.CharField()
    first_name = serializers.CharField(allow_blank=True)
    last_name = serializers.CharField(allow_blank=True)
    is_active = serializers.BooleanField()
    is_staff = serializers.BooleanField()
    date_joined = serializers.DateTimeField()
    last_login = serializers.DateTimeField(allow_null=True)


class _SessionsSerializer(serializers.Serializer):
    active = serializers.IntegerField()


class _TenantDataSerializer(serializers.Serializer):
    tenant = serializers.CharField()
    audit_records = AuditRecordSerializer(many=True, help_text="records whose actor is this person")
    rows = _RowSerializer(many=True, help_text="rows whose created_by-style column names this person")


class GdprExportSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    subject = serializers.CharField(help_text='"user:<id>": how the audit trail names this person')
    profile = _ProfileSerializer()
    memberships = _MembershipSerializer(many=True)
    api_keys = _ApiKeySerializer(many=True, help_text="keys this person created; never their secrets")
    invitations_sent = _InvitationSerializer(many=True)
    invitations_received = _InvitationSerializer(many=True)
    sessions = _SessionsSerializer()
    platform_rows = _RowSerializer(many=True)
    tenants = _TenantDataSerializer(many=True)


class MeExportApi(APIView):
    """All personal data the platform holds about the calling person (GDPR Art. 15/20), as JSON;
    audited (``gdpr.exported``) in every tenant it covers. Staff export anyone with
    ``manage.py gdpr_export --email``."""

    permission_classes = [PersonOnly]

    @extend_schema(operation_id="me_export", responses={200: GdprExportSerializer, **ERRORS})
    def get(self, request):
        return Response(gdpr.gdpr_export(user=request.user, actor=request.user))
