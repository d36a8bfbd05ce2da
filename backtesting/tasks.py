"""Celery tasks of backtesting: thin, take ids, call a service. Idempotent."""

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_backtest(run_id: str) -> str:
    from .services import backtest_execute

    return backtest_execute(run_id=run_id)


@shared_task(name="backtesting.sweep")
def backtests_sweep() -> int:
    """Beat, every minute, in the public schema: one sweep task per active tenant."""
    from tenants.tasks import fan_out

    return fan_out(backtests_sweep_tenant)


@shared_task(name="backtesting.sweep_tenant")
def backtests_sweep_tenant() -> int:
    from .services import backtests_reap

    return backtests_reap()
