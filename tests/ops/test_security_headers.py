"""Security headers on every kind of response (ops/security_headers.py + config/settings/security.py),
cookies' flags, and CSRF on every form-handling URL. The browser tests (tests/browser/) are the
proof the pages work under the policy: they fail on any CSP violation the browser reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import PASSWORD
from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db

STRICT = "default-src 'none'; frame-ancestors 'none'"
TEMPLATES = Path(settings.BASE_DIR) / "templates"


def _directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def _common_headers_present(r) -> None:
    assert r["Permissions-Policy"].startswith("accelerometer=()") and "camera=()" in r["Permissions-Policy"]
    assert r["Cross-Origin-Opener-Policy"] == "same-origin"
    assert r["X-Content-Type-Options"] == "nosniff"
    assert r["Referrer-Policy"] == "same-origin"


def test_a_dashboard_page_gets_the_page_policy_with_a_fresh_nonce(alpha):
    c = dashboard_client(alpha, "viewer")
    r1, r2 = c.get("/app/"), c.get("/app/")
    assert r1.status_code == 200
    _common_headers_present(r1)
    assert r1["X-Frame-Options"] == "DENY"
    policy = _directives(r1["Content-Security-Policy"])
    nonce = re.search(r"'nonce-([^']+)'", r1["Content-Security-Policy"]).group(1)
    assert policy["script-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert policy["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"] and "'self'" in policy["form-action"]
    assert "'unsafe-inline'" not in r1["Content-Security-Policy"].split("style-src-attr")[0]
    assert "unsafe-eval" not in r1["Content-Security-Policy"]
    # the page hands the same nonce to htmx (its indicator <style>), and a new one on every response
    assert f'"inlineStyleNonce": "{nonce}"' in r1.content.decode()
    assert nonce not in r2["Content-Security-Policy"]


def test_the_decisions_page_may_open_the_feed_websocket_and_nothing_else(alpha, usage_redis):
    # the feed's edge server, and daphne (the notification bell's ws/notifications/ on every page)
    r = dashboard_client(alpha, "viewer").get("/app/decisions/")
    assert r.status_code == 200
    connect = _directives(r["Content-Security-Policy"])["connect-src"]
    assert connect == ["'self'", f"ws://testserver:{settings.WS_FEED_PORT}", f"ws://testserver:{settings.WS_PORT}"]
    with override_settings(WS_FEED_PUBLIC_URL="wss://feed.example.test/base", WS_PUBLIC_URL="wss://ws.example.test"):
        r = dashboard_client(alpha, "viewer").get("/app/decisions/")
    connect = _directives(r["Content-Security-Policy"])["connect-src"]
    assert connect == ["'self'", "wss://feed.example.test", "wss://ws.example.test"]


def test_billing_forms_may_post_to_the_payment_gateway_only():
    r = Client().get("/accounts/login/")
    form_action = _directives(r["Content-Security-Policy"])["form-action"]
    gateway = re.match(r"https?://[^/]+", settings.MIDTRANS_SNAP_URL).group(0)
    assert form_action == ["'self'", gateway]


def test_api_json_gets_the_strict_policy_on_success_and_on_errors(alpha):
    ok = alpha.client().get("/api/v1/tenant/")
    assert ok.status_code == 200 and ok["Content-Security-Policy"] == STRICT
    _common_headers_present(ok)
    denied = Client().get("/api/v1/tenant/", HTTP_HOST="alpha.localhost")
    assert denied.status_code in (401, 404) and denied["Content-Security-Policy"] == STRICT
    missing = Client().get("/nope")
    assert missing.status_code == 404 and missing["Content-Security-Policy"] == STRICT
    schema = Client().get("/api/schema/?format=json")
    assert schema["Content-Security-Policy"] == STRICT


def test_static_files_and_redirects_get_headers_too():
    static = Client().get("/static/app/app.js")
    assert static.status_code == 200 and static["Content-Security-Policy"] == STRICT
    _common_headers_present(static)
    redirect = Client().get("/app/")  # Django's redirects say text/html: the page policy
    assert redirect.status_code == 302 and "frame-ancestors 'none'" in redirect["Content-Security-Policy"]
    _common_headers_present(redirect)


def test_admin_login_works_under_the_policy():
    r = Client().get("/admin/login/")
    assert r.status_code == 200
    policy = r["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
    html = r.content.decode()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag


def test_swagger_ui_runs_without_inline_script():
    c = Client()
    r = c.get("/api/docs/")
    assert r.status_code == 200
    nonce = re.search(r"'nonce-([^']+)'", r["Content-Security-Policy"]).group(1)
    html = r.content.decode()
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all("src=" in s for s in scripts)
    assert re.findall(r"<style\b[^>]*>", html) == [f'<style nonce="{nonce}">']
    # the start-up script comes from a same-origin URL, and every asset is local (the sidecar)
    srcs = re.findall(r'<script src="([^"]+)"', html) + re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert all(s.startswith("/") for s in srcs), srcs
    script_url = [s for s in srcs if "script" in s.split("?")[-1]][0]
    js = c.get(script_url.replace("&amp;", "&"))
    assert js.status_code == 200 and "SwaggerUIBundle" in js.content.decode()


def test_no_template_carries_inline_script_or_event_handlers():
    """Inline code would need 'unsafe-inline': behaviour lives in static/app/*.js."""
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag and "application/json" not in tag:
                offenders.append(f"{path.name}: {tag}")
        for handler in re.findall(r"\son[a-z]+\s*=", text):
            offenders.append(f"{path.name}: {handler.strip()}")
        if "javascript:" in text:
            offenders.append(f"{path.name}: javascript: URL")
    assert offenders == []


# --- cookies ------------------------------------------------------------------------------------


def _login(client: Client, email: str, **extra):
    return client.post("/accounts/login/", {"email": email, "password": PASSWORD}, **extra)


def test_session_and_csrf_cookies_are_httponly_and_samesite_over_http(alpha):
    c = Client()
    c.get("/accounts/login/")
    r = _login(c, "viewer@alpha.test")
    assert r.status_code == 302
    session = r.cookies[settings.SESSION_COOKIE_NAME]
    assert session["httponly"] and session["samesite"] == "Lax" and not session["secure"]
    csrf = c.get("/accounts/login/").cookies.get(settings.CSRF_COOKIE_NAME) or c.cookies[settings.CSRF_COOKIE_NAME]
    assert csrf["httponly"] and csrf["samesite"] == "Lax"


def test_cookies_are_secure_when_served_over_https(alpha):
    with override_settings(SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True):
        c = Client()
        page = c.get("/accounts/login/", secure=True)
        r = _login(c, "viewer@alpha.test", secure=True)
    assert r.status_code == 302
    assert page.cookies[settings.CSRF_COOKIE_NAME]["secure"]
    assert r.cookies[settings.SESSION_COOKIE_NAME]["secure"] and r.cookies[settings.SESSION_COOKIE_NAME]["httponly"]


@pytest.mark.parametrize(
    "env, secure",
    [({"HTTPS": "true"}, True), ({"HTTPS": "false"}, False), ({"SECURE_COOKIES": "true"}, True), ({}, False)],
)
def test_secure_cookies_follow_the_https_setting(monkeypatch, env, secure):
    """config/settings/security.py: HTTPS=true (outside DEBUG) or SECURE_COOKIES=true turns the flags
    and HSTS on."""
    import importlib.util

    for name in ("HTTPS", "SECURE_COOKIES", "DJANGO_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.find_spec("config.settings.security")
    fresh = importlib.util.module_from_spec(spec)  # a fresh copy; the live settings are untouched
    spec.loader.exec_module(fresh)
    assert (fresh.SESSION_COOKIE_SECURE, fresh.CSRF_COOKIE_SECURE) == (secure, secure)
    assert (getattr(fresh, "SECURE_HSTS_SECONDS", 0) > 0) == secure


# --- CSRF -----------------------------------------------------------------------------------------


def _form_urls() -> list[str]:
    """Every dashboard, account and admin URL (path converters filled with plausible values)."""
    urls = []

    def walk(patterns, prefix):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern):
                urls.append(route)

    walk(get_resolver("config.urls_public").url_patterns, "")
    filled = []
    for route in urls:
        if not route.startswith(("app/", "accounts/", "admin/")) or "(?P" in route or "^" in route:
            continue
        path = re.sub(r"<int:[^>]+>", "1", route)
        path = re.sub(r"<uuid:[^>]+>", "00000000-0000-0000-0000-000000000001", path)
        path = re.sub(r"<(?:str|slug)?:?[^>]+>", "x", path)
        filled.append("/" + path)
    return sorted(set(filled))


def test_every_dashboard_and_account_url_refuses_a_post_without_csrf_token(alpha):
    urls = _form_urls()
    assert "/app/members/invite/" in urls or any(u.startswith("/app/members") for u in urls)
    assert "/accounts/login/" in urls and "/admin/login/" in urls
    c = Client(enforce_csrf_checks=True)
    c.force_login(alpha.users["owner"])
    refused = {}
    for url in urls:
        r = c.post(url, {"name": "x"})
        refused[url] = r.status_code == 403 and b"data-csrf-failure" in r.content
    assert [u for u, ok in refused.items() if not ok] == []
