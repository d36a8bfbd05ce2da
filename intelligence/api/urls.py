from django.urls import path

from . import learning_views, views

urlpatterns = [
    path("validate-ai-accuracy/", learning_views.ValidateAccuracyApi.as_view(), name="validate-ai-accuracy"),
    path("portfolio/allocation/", learning_views.AllocationApi.as_view(), name="portfolio-allocation"),
    path("decisions/", views.DecisionListCreateApi.as_view(), name="decision-list"),
    path("decisions/<int:decision_id>/", views.DecisionDetailApi.as_view(), name="decision-detail"),
    path("positions/", views.PositionListApi.as_view(), name="position-list"),
    path("ensemble-status/", views.EnsembleStatusApi.as_view(), name="ensemble-status"),
    path("data-stream-status/", views.DataStreamStatusApi.as_view(), name="data-stream-status"),
    path("inference/", views.InferenceApi.as_view(), name="inference"),
    path("flows/", views.FlowListCreateApi.as_view(), name="flow-list"),
    path("flows/presets/", views.FlowPresetsApi.as_view(), name="flow-presets"),
    path("flows/<slug:flow_name>/<int:flow_version>/", views.FlowDetailApi.as_view(), name="flow-detail"),
    path("flows/<slug:flow_name>/<int:flow_version>/diff/", views.FlowDiffApi.as_view(), name="flow-diff"),
    path("flows/<slug:flow_name>/<int:flow_version>/activate/", views.FlowActivateApi.as_view(), name="flow-activate"),
    path("agents/", views.AgentListApi.as_view(), name="agent-list"),
    path("agent-weights/", views.AgentWeightsApi.as_view(), name="agent-weights"),
]
