from celery import shared_task
from django.db import connection


@shared_task(name="ops.probe")
def probe(sleep_seconds: float = 0.0) -> dict:
    """Diagnostic: report the schema this task ran in and that schema's audit-record count.
    Used by tests and by operators checking that workers are wired to tenants correctly."""
    import time

    from compliance.models import AuditRecord

    if sleep_seconds:
        time.sleep(min(sleep_seconds, 10))
    schema = connection.schema_name
    count = AuditRecord.objects.count() if schema != "public" else None
    return {"schema": schema, "audit_records": count}
