import re

from .logging import log_context, new_request_id, request_id_var

_VALID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Echo a caller's ``X-Request-ID`` (if sane) or mint one; logs carry it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        rid = request.headers.get("X-Request-ID", "")
        if not _VALID.match(rid):
            rid = new_request_id()
        request.request_id = rid
        token = request_id_var.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = rid
        return response


def request_actor(request) -> str | None:
    """Who makes the request, as the audit trail names them: ``apikey:<prefix>`` or ``user:<id>``
    (a pseudonym, never an e-mail). Read from what tenant resolution and the session already hold:
    no query."""
    key = getattr(request, "api_key", None)
    if key is not None:
        return f"apikey:{key.prefix}"
    token = getattr(request, "jwt_token", None)
    if token is not None and token.get("user_id") is not None:
        return f"user:{token.get('user_id')}"
    session = getattr(request, "session", None)
    user_id = session.get("_auth_user_id") if session is not None and session.session_key else None
    return f"user:{user_id}" if user_id else None


class LogContextMiddleware:
    """After tenant resolution: every record of the request carries its tenant and user."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        tenant = getattr(request, "tenant", None)
        with log_context(tenant=getattr(tenant, "schema_name", None), user=request_actor(request)):
            return self.get_response(request)
