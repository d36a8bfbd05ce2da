from django.urls import path

from . import views

urlpatterns = [
    path("backtests/", views.BacktestListCreateApi.as_view(), name="backtest-list"),
    path("backtests/compare/", views.BacktestCompareApi.as_view(), name="backtest-compare"),
    path("backtests/<uuid:backtest_id>/", views.BacktestDetailApi.as_view(), name="backtest-detail"),
    path("backtests/<uuid:backtest_id>/cancel/", views.BacktestCancelApi.as_view(), name="backtest-cancel"),
    path("backtests/<uuid:backtest_id>/trades/", views.BacktestTradesApi.as_view(), name="backtest-trades"),
]
