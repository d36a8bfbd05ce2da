from datetime import timedelta

from .base import VERSION
from .env import env_int

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.ApiKeyAuthentication",
        "tenants.authentication.TenantJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.TenantAccess"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.FastJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.CreatedCursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "api.schema.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "AI Trading Intelligence API",
    "DESCRIPTION": (
        "Multi-tenant trading intelligence. Authenticate with `Authorization: Api-Key <key>` "
        'or `Authorization: Bearer <JWT>`. Every error is `{"error": {"code", "message", "details"}}`. '
        "An optional query parameter sent empty (`?symbol=`) is the same as leaving it out."
    ),
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    # operations grouped by their first path segment after /api/v1/ (alerts, models, risk, …)
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_URLCONF": "config.urls_tenants",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # an optional query parameter sent empty is read as left out: the document says so
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.allow_empty_optional_query",
    ],
    "ENUM_NAME_OVERRIDES": {
        "TimeframeEnum": "marketdata.models.Timeframe",
        "JobStateEnum": "models_registry.models.JobState",
        "CircuitStateEnum": "models_registry.models.CircuitState",
        "VersionStatusEnum": "models_registry.models.VersionStatus",
        "CredentialKindEnum": "compliance.models.Credential.Kind",
        "AlertComparatorEnum": "analytics.models.AlertRule.Comparator",
        "AlertMetricEnum": "analytics.metrics.METRICS",
        "HealthStatusEnum": "ops.health.CHECK_STATUSES",
        "HealthFigureStatusEnum": "ops.health.FIGURE_STATUSES",
        "TenantHealthEnum": "ops.health.TENANT_STATUSES",
        "WorkflowStateEnum": "orchestration.models.WorkflowState",
        "WorkflowStepStateEnum": "orchestration.models.StepState",
        "WorkflowKindEnum": "orchestration.models.Kind",
    },
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7)),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": False,
}
