"""Platform health records (public schema)."""

from django.db import models


class AvailabilityProbe(models.Model):
    """One readiness probe of the web tier (``GET /health/ready``), every 30 s from celery beat:
    availability is the share that succeeded."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    ok = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True)
    latency_ms = models.FloatField(null=True)
    error = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {'ok' if self.ok else 'down'}"
