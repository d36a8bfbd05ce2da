from django.urls import path

from . import views

urlpatterns = [
    path("tenant/", views.TenantDetailApi.as_view(), name="tenant-detail"),
    path("api-keys/", views.ApiKeyListCreateApi.as_view(), name="api-key-list"),
    path("api-keys/<int:key_id>/", views.ApiKeyDetailApi.as_view(), name="api-key-detail"),
]
