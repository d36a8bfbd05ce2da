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


PROBE_KEEP_DAYS = 35


@shared_task(name="ops.availability_probe", fair=False)
def availability_probe() -> dict:
    """Beat, every 30 s: probe the web tier's readiness (database, Redis, workers) over HTTP as a
    client would, and keep the result; availability = successful probes / probes in a window."""
    import datetime as dt
    import time
    import urllib.error
    import urllib.request

    from django.conf import settings
    from django.utils import timezone

    from .models import AvailabilityProbe

    started = time.perf_counter()
    status, error = None, ""
    try:
        with urllib.request.urlopen(settings.AVAILABILITY_PROBE_URL, timeout=5) as response:  # noqa: S310 - our own URL
            status = response.status
    except urllib.error.HTTPError as exc:
        status, error = exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    probe = AvailabilityProbe.objects.create(
        ok=status == 200, status_code=status, latency_ms=(time.perf_counter() - started) * 1000, error=error
    )
    AvailabilityProbe.objects.filter(at__lt=timezone.now() - dt.timedelta(days=PROBE_KEEP_DAYS)).delete()
    return {"ok": probe.ok, "status": status, "error": error}
