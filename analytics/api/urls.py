from django.urls import path

from .views import PerformanceApi, TenantDashboardApi, UsageApi

urlpatterns = [
    path("usage/", UsageApi.as_view(), name="usage"),
    path("analytics/performance/", PerformanceApi.as_view(), name="analytics-performance"),
    path("tenant-dashboard/", TenantDashboardApi.as_view(), name="tenant-dashboard"),
]
