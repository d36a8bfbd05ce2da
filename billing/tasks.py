from celery import shared_task


@shared_task(name="billing.cycle", fair=False)
def billing_cycle() -> dict:
    """Beat, hourly, public schema: invoices for ended periods, then dunning."""
    from .services import billing_cycle_run

    return billing_cycle_run()
