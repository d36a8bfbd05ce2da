from django.urls import path

from . import alerts
from .views import PerformanceApi, TenantDashboardApi, UsageApi

urlpatterns = [
    path("usage/", UsageApi.as_view(), name="usage"),
    path("analytics/performance/", PerformanceApi.as_view(), name="analytics-performance"),
    path("tenant-dashboard/", TenantDashboardApi.as_view(), name="tenant-dashboard"),
    path("alerts/", alerts.AlertListApi.as_view(), name="alerts"),
    path("alerts/metrics/", alerts.AlertMetricListApi.as_view(), name="alert-metrics"),
    path("alerts/rules/", alerts.AlertRuleListCreateApi.as_view(), name="alert-rules"),
    path("alerts/rules/<slug:rule_name>/", alerts.AlertRuleDetailApi.as_view(), name="alert-rule"),
    path("alerts/<int:alert_id>/", alerts.AlertDetailApi.as_view(), name="alert"),
    path("alerts/<int:alert_id>/acknowledge/", alerts.AlertAcknowledgeApi.as_view(), name="alert-acknowledge"),
]
