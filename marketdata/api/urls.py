from django.urls import path

from . import views

urlpatterns = [
    path("instruments/", views.InstrumentListCreateApi.as_view(), name="instrument-list"),
    path("instruments/<int:instrument_id>/", views.InstrumentDetailApi.as_view(), name="instrument-detail"),
    path("instruments/<int:instrument_id>/bars/", views.InstrumentBarsApi.as_view(), name="instrument-bars"),
    path(
        "instruments/<int:instrument_id>/statistics/",
        views.InstrumentStatisticsApi.as_view(),
        name="instrument-statistics",
    ),
    path("data/validate/", views.DataValidateApi.as_view(), name="data-validate"),
    path("data/import/", views.DataImportApi.as_view(), name="data-import"),
]
