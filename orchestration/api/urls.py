from django.urls import path

from . import views

urlpatterns = [
    path("workflows/", views.WorkflowListCreateApi.as_view(), name="workflow-list"),
    path("workflows/<uuid:workflow_id>/", views.WorkflowDetailApi.as_view(), name="workflow-detail"),
    path("workflows/<uuid:workflow_id>/approve/", views.WorkflowApproveApi.as_view(), name="workflow-approve"),
    path("workflows/<uuid:workflow_id>/reject/", views.WorkflowRejectApi.as_view(), name="workflow-reject"),
    path("workflows/<uuid:workflow_id>/cancel/", views.WorkflowCancelApi.as_view(), name="workflow-cancel"),
    path("workflows/<uuid:workflow_id>/retry/", views.WorkflowRetryApi.as_view(), name="workflow-retry"),
]
