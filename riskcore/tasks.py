from celery import shared_task


@shared_task(name="riskcore.batch_run")
def batch_run_task(batch_id: int) -> str:
    """In the tenant's schema (tenant-schemas-celery): run one batch job of riskcore analyses."""
    from .services import batch_run

    return batch_run(batch_id=batch_id)
