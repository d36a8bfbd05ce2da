from django.urls import path

from . import views

urlpatterns = [
    path("feature-sets/", views.FeatureSetListCreateApi.as_view(), name="feature-set-list"),
    path("feature-sets/<str:ref>/", views.FeatureSetDetailApi.as_view(), name="feature-set-detail"),
    path("feature-sets/<str:ref>/diff/", views.FeatureSetDiffApi.as_view(), name="feature-set-diff"),
    path("indicators/", views.IndicatorListApi.as_view(), name="indicator-list"),
    path("features/calculate/", views.FeaturesCalculateApi.as_view(), name="features-calculate"),
]
