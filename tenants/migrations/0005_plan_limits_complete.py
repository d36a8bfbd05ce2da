"""The plans' complete limits: API rate per minute (tenant, key, user), monthly quotas (training
jobs, backtest bars), WebSocket connections, market-data retention; the per-day training and
backtest counters and the unused daily request count give way to them."""

from django.db import migrations

LIMITS = {
    "free": {
        "api_requests_per_minute": 120, "api_requests_per_minute_per_key": 60, "api_requests_per_minute_per_user": 60,
        "decisions_per_day": 500, "training_jobs_per_month": 20, "backtest_bars_per_month": 5_000_000,
        "websocket_connections": 5, "market_data_retention_days": 365,
    },
    "pro": {
        "api_requests_per_minute": 3_000, "api_requests_per_minute_per_key": 1_200,
        "api_requests_per_minute_per_user": 600, "decisions_per_day": 20_000, "training_jobs_per_month": 500,
        "backtest_bars_per_month": 500_000_000, "websocket_connections": 200, "market_data_retention_days": 3_650,
    },
    "enterprise": {
        "api_requests_per_minute": 60_000, "api_requests_per_minute_per_key": None,
        "api_requests_per_minute_per_user": None, "decisions_per_day": None, "training_jobs_per_month": None,
        "backtest_bars_per_month": None, "websocket_connections": 5_000, "market_data_retention_days": None,
    },
}  # fmt: skip
DROPPED = ("api_requests", "training_jobs_per_day", "backtests_per_day")


def apply(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for code, limits in LIMITS.items():
        plan = Plan.objects.filter(code=code).first()
        if plan is not None:
            kept = {k: v for k, v in plan.limits.items() if k not in DROPPED}
            plan.limits = {**kept, **limits}
            plan.save(update_fields=["limits"])


class Migration(migrations.Migration):
    dependencies = [("tenants", "0004_plan_training_limits")]
    operations = [migrations.RunPython(apply, migrations.RunPython.noop)]
