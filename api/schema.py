"""OpenAPI pieces shared by every endpoint: the error envelope and its documented responses."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(help_text="Stable snake_case code, e.g. invalid_input."),
                "message": serializers.CharField(help_text="What happened and what to do."),
                "details": serializers.DictField(),
            },
        )
    },
)

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="invalid_input and other validation codes"),
    401: OpenApiResponse(ErrorSerializer, description="not_authenticated, invalid_api_key, invalid_token"),
    403: OpenApiResponse(ErrorSerializer, description="insufficient_role, insufficient_scope"),
    404: OpenApiResponse(ErrorSerializer, description="not_found (also for other tenants' objects)"),
    409: OpenApiResponse(ErrorSerializer, description="conflicts: slug_taken, last_owner, overlapping_bars, …"),
    402: OpenApiResponse(ErrorSerializer, description="a monthly quota used up: <quota>_exceeded"),
    413: OpenApiResponse(ErrorSerializer, description="file_too_large"),
    429: OpenApiResponse(
        ErrorSerializer,
        description="rate_limited (Retry-After), a daily quota used up (<quota>_exceeded), plan_limit_exceeded",
    ),
}


class AutoSchema(__import__("drf_spectacular.openapi", fromlist=["AutoSchema"]).AutoSchema):
    """Names serializers nested in a view after the view (``ApiKeyListCreateApi.InputSerializer`` ->
    ``ApiKeyListCreateInput``) so the one-view-per-operation style never collides in components."""

    def _get_serializer_name(self, serializer, direction, bypass_extensions=False):
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        qualname = type(serializer).__qualname__
        if "." in qualname and not getattr(getattr(serializer, "Meta", None), "ref_name", None):
            owner = qualname.split(".")[0].removesuffix("Api")
            return owner + name
        return name


def allow_empty_optional_query(result, generator, request, public):
    """drf-spectacular postprocessing hook: the API reads an optional query parameter sent empty
    (``?symbol=``) as left out (DRF's rule for query serializers, kept by the hand-read ones), so
    the document says so with ``allowEmptyValue`` and clients and fuzzers know ``""`` is accepted."""
    for item in result.get("paths", {}).values():
        for op in item.values():
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                if param.get("in") == "query" and not param.get("required"):
                    param["allowEmptyValue"] = True
    return result
