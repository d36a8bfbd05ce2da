"""Celery tasks of backtesting: thin, take ids, call a service. Idempotent."""

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_backtest(run_id: str) -> str:
    from .services import backtest_execute

    return backtest_execute(run_id=run_id)
