"""Liveness, readiness and version. Plain Django views: no auth, no tenant, no DRF overhead. Readiness
uses the probes of ``ops.health`` (which staff see in full at /api/v1/services-health/)."""

from django.conf import settings
from django.http import JsonResponse

from . import health as probes


def health(request):
    return JsonResponse({"status": "ok"})


def ready(request):
    checks = {
        "postgres": probes.timed(probes.postgres_ping),
        "redis": probes.timed(probes.redis_ping),
        "celery": probes.timed(probes.celery_ping),
    }
    ok = all(c["status"] == "ok" for c in checks.values())
    return JsonResponse({"status": "ok" if ok else "degraded", "checks": checks}, status=200 if ok else 503)


def version(request):
    return JsonResponse({"version": settings.VERSION, "git_sha": settings.GIT_SHA, "api": "v1"})
