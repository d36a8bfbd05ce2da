"""Liveness, readiness and version. Plain Django views: no auth, no tenant, no DRF overhead."""

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def health(request):
    return JsonResponse({"status": "ok"})


def _timed(check):
    start = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # report, never raise: this endpoint exists to say what is down
        detail, ok = f"{type(exc).__name__}: {exc}"[:200], False
    out = {"status": "ok" if ok else "down", "latency_ms": round((time.perf_counter() - start) * 1000, 2)}
    if detail:
        out["detail"] = detail
    return out


def _postgres():
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def _redis():
    redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()


def _celery():
    from config.celery import app

    replies = app.control.ping(timeout=1.0, limit=1)
    if not replies:
        raise RuntimeError(
            "no Celery worker answered within 1 s; start one with `make run` or `celery -A config worker`"
        )
    return f"{len(replies)} worker(s)"


def ready(request):
    checks = {"postgres": _timed(_postgres), "redis": _timed(_redis), "celery": _timed(_celery)}
    ok = all(c["status"] == "ok" for c in checks.values())
    return JsonResponse({"status": "ok" if ok else "degraded", "checks": checks}, status=200 if ok else 503)


def version(request):
    return JsonResponse({"version": settings.VERSION, "git_sha": settings.GIT_SHA, "api": "v1"})
