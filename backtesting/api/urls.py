from django.urls import path

from . import views

urlpatterns = [
    path("backtests/", views.BacktestListCreateApi.as_view(), name="backtest-list"),
    path("backtests/<uuid:backtest_id>/", views.BacktestDetailApi.as_view(), name="backtest-detail"),
    path("backtests/<uuid:backtest_id>/trades/", views.BacktestTradesApi.as_view(), name="backtest-trades"),
]
