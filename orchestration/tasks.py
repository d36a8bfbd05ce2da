"""Celery tasks of orchestration: thin, take ids, call a service. Idempotent."""

from __future__ import annotations

import random

from celery import shared_task
from django.conf import settings


def backoff(retries: int) -> float:
    """Seconds before retry ``retries + 1``: exponential from ORCHESTRATION_RETRY_BASE_S, capped, jittered."""
    base = float(settings.ORCHESTRATION_RETRY_BASE_S)
    return min(base * 2**retries, 300.0) * (0.8 + 0.4 * random.random())


@shared_task(bind=True, name="orchestration.run_step", acks_late=True, reject_on_worker_lost=True)
def run_step(self, workflow_id: str, step: str) -> str:
    """One step of a workflow; it queues the next one when it ends. A transient error (database or
    Redis unreachable) is retried with backoff, up to ORCHESTRATION_MAX_RETRIES times."""
    from django.db import connection

    from . import services

    try:
        return services.step_execute(workflow_id=workflow_id, name=step)
    except services.Wait as wait:
        services.enqueue(workflow_id, step, countdown=wait.countdown)
        return "waiting"
    except services.transient_errors() as exc:
        if not connection.in_atomic_block:
            connection.close()  # the next attempt opens a fresh connection (same schema)
        if self.request.retries >= settings.ORCHESTRATION_MAX_RETRIES:
            services.step_give_up(workflow_id=workflow_id, name=step, error=exc)
            return "failed"
        raise self.retry(exc=exc, countdown=backoff(self.request.retries), max_retries=None) from exc


@shared_task(name="orchestration.sweep")
def sweep() -> int:
    """Beat, every minute, in the public schema: one sweep task per active tenant."""
    from tenants.tasks import fan_out

    return fan_out(sweep_tenant)


@shared_task(name="orchestration.sweep_tenant")
def sweep_tenant() -> int:
    from .services import workflows_reap

    return workflows_reap()
