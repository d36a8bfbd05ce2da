"""Celery tasks of the delivery engine (queue ``notify``, a worker of its own so notifications never
wait behind training jobs). Thin: each takes an id and calls ``notifications.delivery``."""

from celery import shared_task

# many small tasks: no stored result, and the tenant's row read once per half minute per worker
FAST = {"ignore_result": True, "tenant_cache_seconds": 30}


@shared_task(name="notifications.fanout", fair=False, acks_late=True, reject_on_worker_lost=True, **FAST)
def fanout_task(event_id: int) -> int:
    from .delivery import fanout

    return fanout(event_id)


@shared_task(name="notifications.deliver", fair=False, acks_late=True, reject_on_worker_lost=True, **FAST)
def deliver_task(delivery_id: int) -> str:
    from .delivery import deliver

    return deliver(delivery_id)


@shared_task(name="notifications.sweep_all", fair=False)
def sweep_all() -> int:
    """Beat, every 30 s, in the public schema: one sweep task per active tenant."""
    from tenants.tasks import fan_out

    return fan_out(sweep_task)


@shared_task(name="notifications.sweep", fair=False)
def sweep_task() -> dict:
    from .delivery import sweep

    return sweep()
