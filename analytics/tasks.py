from celery import shared_task


@shared_task(name="analytics.meter_flush", fair=False)
def meter_flush_task() -> dict:
    """Beat, every minute, in the public schema: the Redis meter into the tenants' usage tables."""
    from .services import meter_flush

    return meter_flush()
