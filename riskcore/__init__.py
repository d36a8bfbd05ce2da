"""Risk and analytics (the AI core), per tenant: multi-factor risk of an instrument or the paper
portfolio (metrics.py, selectors.instrument_risk / portfolio_risk), anomaly detection on bars and
on the decision stream emitting ``anomaly.detected`` (detection.py, services.*_anomalies_detect),
next-bar return forecasts with an out-of-sample-checked interval (forecast.py), relative valuation
from posted fundamentals (valuation.py), and batch jobs running any of them over many instruments
on Celery (services.batch_create / batch_run, tasks.batch_run_task). API: riskcore/api/urls.py;
dashboard: dashboard/risk_views.py."""
