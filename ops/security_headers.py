"""Security headers on every response: a Content-Security-Policy, Permissions-Policy and
Cross-Origin-Opener-Policy (the rest — HSTS, nosniff, Referrer-Policy, X-Frame-Options — come from
Django's SecurityMiddleware and clickjacking middleware with config/settings/security.py).

Two policies, chosen by what the response is:

* HTML (dashboard, accounts, admin, Swagger UI): ``settings.SECURE_CSP``. Scripts and ``<style>``
  elements only from this origin or carrying the request's nonce (``{% csp_nonce_attr %}`` /
  ``{{ csp_nonce }}``); the page may open the decision feed's WebSocket, which lives on another
  port (``WS_FEED_PORT``) or at ``WS_FEED_PUBLIC_URL``, and the notification bell's on daphne
  (``WS_PORT`` or ``WS_PUBLIC_URL``), so those origins join ``connect-src``.
* anything else (API JSON, the schema, static files, redirects): ``settings.SECURE_CSP_API``,
  ``default-src 'none'; frame-ancestors 'none'`` — a JSON body opened in a tab runs nothing.

It sits first in MIDDLEWARE so responses short-circuited further in (WhiteNoise's static files,
CSRF failures, tenant 404s) get the headers too. Django's own CSP middleware does the nonce; this
subclass picks the policy. A view that sets its own Content-Security-Policy keeps it.
"""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.middleware.csp import ContentSecurityPolicyMiddleware, get_nonce
from django.utils.csp import CSP, build_policy


def _ws_origin(request, configured: str, port: int) -> str:
    """A WebSocket server's origin as the browser sees it: ``configured`` (behind a proxy) or this
    host on ``port``."""
    if configured:
        parts = urlparse(configured)
        return f"{parts.scheme}://{parts.netloc}"
    try:
        host = request.get_host().split(":")[0]
    except Exception:  # DisallowedHost: the page is an error page anyway, no feed
        return ""
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{host}:{port}"


def _feed_origin(request) -> str:
    """The decision feed's origin as the browser sees it (dashboard/decisions_views._feed_base)."""
    return _ws_origin(request, settings.WS_FEED_PUBLIC_URL, settings.WS_FEED_PORT)


def _channels_origin(request) -> str:
    """daphne's origin (the notification bell's ``ws/notifications/``, dashboard/context_processors)."""
    return _ws_origin(request, settings.WS_PUBLIC_URL, settings.WS_PORT)


def _is_html(response) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip().lower() == "text/html"


class SecurityHeadersMiddleware(ContentSecurityPolicyMiddleware):
    def process_request(self, request):
        super().process_request(request)
        # draw the nonce now: Django's ``{% csp_nonce_attr %}`` (admin's change list <style>) renders
        # it only if something used it before, and the header would then carry none
        str(request._csp_nonce)

    def process_response(self, request, response):
        if CSP.HEADER_ENFORCE not in response:
            if _is_html(response):
                config = dict(settings.SECURE_CSP)
                origins = [o for o in dict.fromkeys((_feed_origin(request), _channels_origin(request))) if o]
                if origins:
                    config["connect-src"] = [*config.get("connect-src", [CSP.SELF]), *origins]
            else:
                config = settings.SECURE_CSP_API
            if config:
                response.headers[CSP.HEADER_ENFORCE] = build_policy(config, get_nonce(request))
        if settings.PERMISSIONS_POLICY:
            response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        # SecurityMiddleware sets it too, but not on responses short-circuited before it
        if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
            response.headers.setdefault("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY)
        return response
