"""Credentials over REST: metadata and the masked hint out, secrets in only (write-only).

Reading needs admin/owner (API keys: the admin scope), like API keys: even without the secret, the
list says which exchanges, brokers and bots the tenant trades through, with account names and
webhook URLs, which analysts and viewers do not need. Writing needs the same. No endpoint returns a
secret: code that needs one calls ``compliance.credentials.credential_use`` at its point of use.
"""

from __future__ import annotations

from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from api.pagination import CreatedCursorPagination
from api.schema import ERRORS
from tenants.permissions import MANAGE

from .. import credentials
from ..models import Credential

NO_STORE = {"Cache-Control": "no-store"}


class CredentialOutputSerializer(serializers.ModelSerializer):
    hint = serializers.CharField(
        read_only=True, help_text="'…' and the last 4 characters of a secret of 16 or more; empty for a shorter one."
    )
    metadata = serializers.DictField(read_only=True, help_text="Non-secret settings of the credential's kind.")

    class Meta:
        model = Credential
        fields = (
            "id", "name", "kind", "hint", "metadata", "version", "created_by", "created_at", "rotated_at",
            "last_used_at",
        )  # fmt: skip
        read_only_fields = fields


def _secret_field() -> serializers.CharField:
    return serializers.CharField(
        write_only=True,
        max_length=credentials.SECRET_MAX_LENGTH,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="The secret (token, password, API secret). Stored encrypted; never returned.",
        error_messages={"max_length": f"At most {credentials.SECRET_MAX_LENGTH} characters."},
    )


def _valid(serializer: serializers.Serializer) -> dict:
    """DRF's field errors (400 ``invalid_input``) name what is wrong, never quote the value sent."""
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@method_decorator(sensitive_post_parameters("secret"), name="dispatch")
class CredentialListCreateApi(APIView):
    """``GET``: the tenant's credentials, metadata and hint only. ``POST``: store a new credential."""

    access = {"GET": MANAGE, "POST": MANAGE}
    pagination_class = CreatedCursorPagination

    class InputSerializer(serializers.Serializer):
        name = serializers.SlugField(max_length=64, help_text="Unique in the tenant; how code asks for it.")
        kind = serializers.ChoiceField(
            choices=Credential.Kind.choices,
            error_messages={"invalid_choice": f"Use one of: {', '.join(Credential.Kind.values)}."},
        )
        secret = _secret_field()
        metadata = serializers.DictField(
            required=False, help_text=f"Optional non-secret settings, per kind: {credentials.metadata_help()}."
        )

    @extend_schema(operation_id="credentials_list", responses={200: CredentialOutputSerializer(many=True), **ERRORS})
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(credentials.credential_list(), request, view=self)
        return paginator.get_paginated_response(CredentialOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="credentials_create",
        request=InputSerializer,
        responses={201: CredentialOutputSerializer, **ERRORS},
        description="Store a secret. It is never shown again: rotate it to replace it.",
    )
    def post(self, request):
        data = _valid(self.InputSerializer(data=request.data))
        credential = credentials.credential_create(**data, actor=request.user)
        return Response(CredentialOutputSerializer(credential).data, status=201, headers=NO_STORE)


class CredentialDetailApi(APIView):
    access = {"GET": MANAGE, "DELETE": MANAGE}

    @extend_schema(operation_id="credentials_retrieve", responses={200: CredentialOutputSerializer, **ERRORS})
    def get(self, request, credential_id: int):
        return Response(CredentialOutputSerializer(credentials.credential_get(credential_id=credential_id)).data)

    @extend_schema(
        operation_id="credentials_delete",
        responses={204: OpenApiResponse(description="Deleted; the secret is gone."), **ERRORS},
    )
    def delete(self, request, credential_id: int):
        credentials.credential_delete(credential_id=credential_id, actor=request.user)
        return Response(status=204)


@method_decorator(sensitive_post_parameters("secret"), name="dispatch")
class CredentialRotateApi(APIView):
    """Replace a credential's secret; its version goes up and the old secret is gone."""

    access = {"POST": MANAGE}

    class InputSerializer(serializers.Serializer):
        secret = _secret_field()

    @extend_schema(
        operation_id="credentials_rotate",
        request=InputSerializer,
        responses={200: CredentialOutputSerializer, **ERRORS},
    )
    def post(self, request, credential_id: int):
        data = _valid(self.InputSerializer(data=request.data))
        credential = credentials.credential_rotate(credential_id=credential_id, actor=request.user, **data)
        return Response(CredentialOutputSerializer(credential).data, headers=NO_STORE)
