from celery import shared_task


@shared_task(name="riskcore.batch_run")
def batch_run_task(batch_id: int) -> str:
    """In the tenant's schema (tenant-schemas-celery): run one batch job of riskcore analyses."""
    from .services import batch_run

    return batch_run(batch_id=batch_id)


@shared_task(name="riskcore.anomaly_sweep", fair=False)
def anomaly_sweep_all() -> int:
    """Beat, hourly, public schema: one anomaly sweep per active tenant."""
    from tenants.tasks import fan_out

    return fan_out(anomaly_sweep_task)


@shared_task(name="riskcore.anomaly_tick")
def anomaly_sweep_task() -> dict:
    """In a tenant's schema: new anomalies in its bars and decision stream stored, notified, emitted."""
    from .services import anomaly_sweep

    return anomaly_sweep()
