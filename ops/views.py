"""Liveness, readiness and version. Plain Django views: no auth, no tenant, no DRF overhead. Readiness
uses the probes of ``ops.health`` (which staff see in full at /api/v1/services-health/)."""

from django.conf import settings
from django.http import HttpResponse, JsonResponse

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


def metrics(request):
    """Prometheus text (ops/metrics.py): staff session, ``Authorization: Bearer $METRICS_TOKEN``,
    or loopback when ``METRICS_ALLOW_LOOPBACK``; anyone else 403 with the error envelope."""
    from api.errors import error_response

    from . import metrics as m

    who, code = m.scraper(request)
    if who is None:
        if code == "invalid_metrics_token":
            return error_response(code, "The bearer token is not METRICS_TOKEN.", 403)
        return error_response(
            code,
            "Metrics are for platform staff (a staff session), a scraper with 'Authorization: Bearer "
            "<METRICS_TOKEN>', or loopback when METRICS_ALLOW_LOOPBACK is set.",
            403,
        )
    response = HttpResponse(m.render(), content_type=m.CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response
