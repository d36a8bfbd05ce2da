from django.urls import path

from . import views

urlpatterns = [
    path("risk/portfolio/", views.PortfolioRiskApi.as_view(), name="risk-portfolio"),
    path("risk/<str:symbol>/", views.InstrumentRiskApi.as_view(), name="risk-instrument"),
    path("anomalies/", views.AnomalyListApi.as_view(), name="anomalies"),
    path("anomalies/detect/", views.AnomalyDetectApi.as_view(), name="anomalies-detect"),
    path("forecast/<str:symbol>/", views.ForecastApi.as_view(), name="forecast"),
    path("valuation/<str:symbol>/", views.ValuationApi.as_view(), name="valuation"),
    path("fundamentals/", views.FundamentalsApi.as_view(), name="fundamentals"),
    path("batch/", views.BatchCreateApi.as_view(), name="batch-create"),
    path("batch/<int:batch_id>/", views.BatchDetailApi.as_view(), name="batch-detail"),
]
