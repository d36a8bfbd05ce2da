"""One error type and one envelope: ``{"error": {"code", "message", "details"}}``.

Services raise :class:`ApplicationError` with a stable snake_case ``code``; DRF's own exceptions
(validation, auth, throttling, 404) are mapped to the same envelope by :func:`exception_handler`.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A failure the user can act on. ``status`` is the HTTP status it maps to."""

    def __init__(
        self, code: str, message: str, details: dict | None = None, status: int = 400, headers: dict | None = None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.status = status
        self.headers = headers or {}  # e.g. Retry-After on a quota's 429


class NotFound(ApplicationError):
    def __init__(self, what: str = "resource", details: dict | None = None):
        super().__init__("not_found", f"The {what} does not exist.", details, status=404)


_DRF_CODES = {
    exceptions.ValidationError: "invalid_input",
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}

_MESSAGES = {
    "invalid_input": "The request has invalid fields; see details.",
    "not_authenticated": "Authentication required: send 'Authorization: Api-Key <key>' or a Bearer token.",
    "not_found": "Not found.",
}


def envelope(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(code: str, message: str, status_code: int, details: dict | None = None) -> JsonResponse:
    """The envelope as a plain Django response, for middleware (outside DRF)."""
    return JsonResponse(envelope(code, message, details), status=status_code)


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response(envelope(exc.code, exc.message, exc.details), status=exc.status, headers=exc.headers or None)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)

    from rest_framework.views import exception_handler as drf_exception_handler  # avoid import cycle

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's 500 handler (JSON in config.urls) takes it
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        message = _MESSAGES["invalid_input"]
    else:
        details = {}
        message = str(exc.detail) if getattr(exc, "detail", None) else _MESSAGES.get(code, code)
        if code == "not_authenticated":
            message = _MESSAGES["not_authenticated"]
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            details = {"retry_after_seconds": int(exc.wait)}
    response.data = envelope(code, message, details)
    return response


def _wants_html(request) -> bool:
    """Dashboard pages get HTML error pages; API, health and anything asking for JSON get the envelope."""
    if request.path.startswith(("/api/", "/health", "/version", "/ws/")):
        return False
    return "text/html" in request.headers.get("Accept", "")


DATABASE_RETRY_AFTER_S = 5
DATABASE_DOWN_STATES = {"57P01", "57P02", "57P03"}  # admin / crash shutdown, cannot connect now


def _database_down() -> bool:
    """The exception being handled is the database being unreachable (down, restarting, refusing
    connections): a 503 the client may retry, not a bug. Django closes the broken connection at the
    end of the request (``errors_occurred``), so the first request after the server is back
    reconnects; no restart of the app is needed."""
    import sys

    import psycopg
    from django.db import InterfaceError, OperationalError

    exc, seen, wrapped = sys.exc_info()[1], 0, False
    while exc is not None and seen < 10:  # django.db's wrapper, then the driver's own error
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            # no SQLSTATE: the connection failed or broke; 08xxx connection exceptions; 57P01-03 the
            # server shutting down or starting. Not a timeout or a deadlock (also OperationalError).
            state = getattr(exc, "sqlstate", None)
            return state is None or state.startswith("08") or state in DATABASE_DOWN_STATES
        wrapped = wrapped or isinstance(exc, (OperationalError, InterfaceError))
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return wrapped


def server_error(request, *args, **kwargs):
    if _database_down():
        logger.warning("database unavailable: %s %s answered 503", request.method, request.path)
        if _wants_html(request):
            from django.http import HttpResponse
            from django.template.loader import render_to_string

            response = HttpResponse(render_to_string("500.html"), status=503)  # no context: the DB is down
            response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
            return response
        response = error_response(
            "database_unavailable",
            f"The database is unavailable for a moment; retry in {DATABASE_RETRY_AFTER_S} s.",
            status.HTTP_503_SERVICE_UNAVAILABLE,
            {"retry_after_seconds": DATABASE_RETRY_AFTER_S},
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response
    if _wants_html(request):
        from django.http import HttpResponse
        from django.template.loader import render_to_string

        return HttpResponse(render_to_string("500.html"), status=500)  # no context: the DB may be down
    return error_response(
        "server_error",
        "Internal error; it was logged. Retry, or report the request id.",
        status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def not_found(request, exception=None, *args, **kwargs):
    if _wants_html(request):
        from django.shortcuts import render

        return render(request, "404.html", status=404)
    return error_response("not_found", "Not found.", status.HTTP_404_NOT_FOUND)
