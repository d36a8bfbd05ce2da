from django.urls import path

from .views import UsageApi

urlpatterns = [
    path("usage/", UsageApi.as_view(), name="usage"),
]
