from django.urls import path

from . import views

urlpatterns = [
    path("config/", views.ConfigListApi.as_view(), name="config-list"),
    path("config/schema/", views.ConfigSchemaApi.as_view(), name="config-schema"),
    path("config/<slug:environment>/", views.ConfigDetailApi.as_view(), name="config-detail"),
    path("config/<slug:environment>/versions/", views.ConfigVersionListApi.as_view(), name="config-versions"),
    path(
        "config/<slug:environment>/versions/<int:config_version>/",
        views.ConfigVersionDetailApi.as_view(),
        name="config-version-detail",
    ),
    path("config/<slug:environment>/diff/", views.ConfigDiffApi.as_view(), name="config-diff"),
    path("config/<slug:environment>/rollback/", views.ConfigRollbackApi.as_view(), name="config-rollback"),
    path("config/<slug:environment>/promote/", views.ConfigPromoteApi.as_view(), name="config-promote"),
]
