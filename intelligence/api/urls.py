from django.urls import path

from . import views

urlpatterns = [
    path("decisions/", views.DecisionListCreateApi.as_view(), name="decision-list"),
    path("decisions/<int:decision_id>/", views.DecisionDetailApi.as_view(), name="decision-detail"),
    path("positions/", views.PositionListApi.as_view(), name="position-list"),
    path("ensemble-status/", views.EnsembleStatusApi.as_view(), name="ensemble-status"),
    path("data-stream-status/", views.DataStreamStatusApi.as_view(), name="data-stream-status"),
    path("inference/", views.InferenceApi.as_view(), name="inference"),
    path("flows/", views.FlowListCreateApi.as_view(), name="flow-list"),
    path("flows/presets/", views.FlowPresetsApi.as_view(), name="flow-presets"),
]
