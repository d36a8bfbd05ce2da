"""Celery tasks of the registry: thin, take ids, call a service. All are idempotent."""

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True)
def train_model(job_id: str) -> str:
    from .services.training import training_job_run

    return training_job_run(job_id=job_id)


@shared_task(name="models_registry.sweep")
def registry_sweep() -> int:
    """Beat, every few minutes, in the public schema: one sweep task per active tenant."""
    from tenants.tasks import fan_out

    return fan_out(registry_sweep_tenant)


@shared_task
def registry_sweep_tenant() -> dict:
    from .services.maintenance import registry_sweep_run

    return registry_sweep_run()
