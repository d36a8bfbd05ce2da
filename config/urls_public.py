"""URLs served without a tenant: health, docs, auth, admin, the dashboard (it picks the tenant from
the session). A tenant API URL here is a 404."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.api.views import TokenObtainApi, TokenRefreshApi
from analytics.api.views import PlatformUsageApi
from billing.api.views import MidtransNotificationApi, PlatformKillSwitchApi, PlatformRevenueApi
from compliance.api.views import MeExportApi
from dashboard import views as dashboard
from notifications.api.telegram import telegram_webhook
from ops import views as ops
from ops.api.views import ServicesHealthApi

handler404 = "api.errors.not_found"
handler500 = "api.errors.server_error"

urlpatterns = [
    path("", dashboard.home, name="home"),
    path("app/", include("dashboard.urls")),
    path("accounts/", include("accounts.urls")),
    path("health", ops.health, name="health"),
    path("health/ready", ops.ready, name="health-ready"),
    path("version", ops.version, name="version"),
    # Prometheus text: staff, METRICS_TOKEN or loopback (ops/metrics.py; docs/observability.md)
    path("metrics", ops.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # split view: Swagger UI's start-up script from a URL, not inline (Content-Security-Policy)
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html"),
        name="swagger-ui",
    ),
    path("api/v1/auth/token/", TokenObtainApi.as_view(), name="auth-token"),
    path("api/v1/auth/token/refresh/", TokenRefreshApi.as_view(), name="auth-token-refresh"),
    # the payment gateway's notifications: public, verified by signature (billing/)
    path(
        "api/v1/billing/midtrans/notification/", MidtransNotificationApi.as_view(), name="billing-midtrans-notification"
    ),
    # Telegram's updates for a tenant's bot: public, verified by the secret token (notifications/)
    path("hooks/telegram/<slug:tenant>/<int:bot_id>/", telegram_webhook, name="telegram-webhook"),
    path("api/v1/platform/revenue/", PlatformRevenueApi.as_view(), name="platform-revenue"),
    path("api/v1/platform/usage/", PlatformUsageApi.as_view(), name="platform-usage"),
    path("api/v1/platform/kill-switch/", PlatformKillSwitchApi.as_view(), name="platform-kill-switch"),
    # staff: every dependency and tenant judged against the seed thresholds (ops/health.py)
    path("api/v1/services-health/", ServicesHealthApi.as_view(), name="services-health"),
    # a person's own GDPR export (session or Bearer token; routed with or without a tenant)
    path("api/v1/me/export/", MeExportApi.as_view(), name="me-export"),
    path("admin/", admin.site.urls),
]
