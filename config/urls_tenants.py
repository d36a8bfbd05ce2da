"""URLs served once a tenant is resolved: the public ones plus every tenant API under /api/v1/."""

from django.urls import include, path

from config.urls_public import urlpatterns as public_urlpatterns

handler404 = "api.errors.not_found"
handler500 = "api.errors.server_error"

urlpatterns = [
    path("api/v1/", include("tenants.api.urls")),
    path("api/v1/", include("marketdata.api.urls")),
    path("api/v1/", include("features.api.urls")),
    path("api/v1/", include("models_registry.api.urls")),
    path("api/v1/", include("intelligence.api.urls")),
    path("api/v1/", include("backtesting.api.urls")),
    path("api/v1/", include("configuration.api.urls")),
    path("api/v1/", include("notifications.api.urls")),
    path("api/v1/", include("analytics.api.urls")),
    path("api/v1/", include("orchestration.api.urls")),
    path("api/v1/", include("riskcore.api.urls")),
    path("api/v1/", include("billing.api.urls")),
    path("api/v1/", include("compliance.api.urls")),
    path("api/v1/", include("compliance.api.credential_urls")),
    *public_urlpatterns,
]
