from django.urls import path

from .views import PerformanceApi, UsageApi

urlpatterns = [
    path("usage/", UsageApi.as_view(), name="usage"),
    path("analytics/performance/", PerformanceApi.as_view(), name="analytics-performance"),
]
