from django.urls import path

from . import views

urlpatterns = [
    path("training-jobs/", views.TrainingJobListCreateApi.as_view(), name="training-job-list"),
    path("training-jobs/<uuid:job_id>/", views.TrainingJobDetailApi.as_view(), name="training-job-detail"),
    path("training-jobs/<uuid:job_id>/cancel/", views.TrainingJobCancelApi.as_view(), name="training-job-cancel"),
    path("automl-recommendations/", views.RecommendationsApi.as_view(), name="automl-recommendations"),
    path("models/", views.ModelListApi.as_view(), name="model-list"),
    path("model-alerts/", views.AlertListApi.as_view(), name="model-alert-list"),
    path("models/<slug:name>/", views.ModelDetailApi.as_view(), name="model-detail"),
    path("models/<slug:name>/predict/", views.PredictApi.as_view(), name="model-predict"),
    path("models/<slug:name>/deploy/", views.DeployApi.as_view(), name="model-deploy"),
    path("models/<slug:name>/rollback/", views.RollbackApi.as_view(), name="model-rollback"),
    path("models/<slug:name>/ab/", views.AbTestApi.as_view(), name="model-ab"),
    path("models/<slug:name>/ab/promote/", views.AbPromoteApi.as_view(), name="model-ab-promote"),
    path("models/<slug:name>/ab/abort/", views.AbAbortApi.as_view(), name="model-ab-abort"),
    path("models/<slug:name>/retrain/", views.RetrainApi.as_view(), name="model-retrain"),
    path("models/<slug:name>/versions/<int:version>/", views.VersionDetailApi.as_view(), name="model-version-detail"),
    path("models/<slug:name>/versions/<int:version>/drift/", views.DriftApi.as_view(), name="model-version-drift"),
    path(
        "models/<slug:name>/versions/<int:version>/circuit/", views.CircuitApi.as_view(), name="model-version-circuit"
    ),
]
