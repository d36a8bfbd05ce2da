from celery import shared_task


@shared_task(name="analytics.meter_flush", fair=False)
def meter_flush_task() -> dict:
    """Beat, every minute, in the public schema: the Redis meter into the tenants' usage tables."""
    from .services import meter_flush

    return meter_flush()


@shared_task(name="analytics.tenants_tick", fair=False)
def tenants_tick() -> int:
    """Beat, every minute, in the public schema: one tick task per active tenant."""
    from tenants.tasks import fan_out

    return fan_out(tenant_tick)


@shared_task(name="analytics.tenant_tick")
def tenant_tick() -> dict:
    """In a tenant's schema: performance rollups brought up to date, alert thresholds evaluated, the
    audit trail sealed, new decisions indexed for compliance review."""
    from django.db import connection

    from compliance.chain import audit_chain
    from review.services import review_tick

    from .alerts import alerts_evaluate
    from .services import performance_rollup

    days = performance_rollup()
    changes = alerts_evaluate(schema=connection.schema_name)
    sealed = audit_chain()
    review = review_tick()  # new decisions into the public compliance review index
    return {"days_rolled_up": days, "alert_changes": len(changes), "audit_records_sealed": sealed,
            "review_indexed": review["indexed"]}  # fmt: skip


@shared_task(name="analytics.retention_tick", fair=False)
def retention_tick() -> int:
    """Beat, daily, public schema: each tenant's market data past its plan's retention deleted."""
    from django_tenants.utils import schema_context

    from marketdata.services import bars_retention_apply
    from tenants.models import Tenant

    total = 0
    for tenant in Tenant.objects.filter(status=Tenant.Status.ACTIVE).select_related("plan"):
        with schema_context(tenant.schema_name):
            total += bars_retention_apply(tenant=tenant)
    return total
