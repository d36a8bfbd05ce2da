"""Login lockout (accounts/lockout.py) through each way in: the dashboard's form, the API's token
endpoint and Django admin's login; counted together, per login name and per client address."""

from __future__ import annotations

import itertools
import logging

import pytest
from django.conf import settings
from django.test import Client

from accounts import lockout
from tenants.resolution import redis_client
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "wrong-password-1"
LIMIT = settings.LOGIN_LOCKOUT_MAX_FAILURES


def _fail(n: int, username: str = "viewer@alpha.test", ip: str = "10.0.0.1", via: str = "dashboard") -> None:
    for _ in range(n):
        lockout.failure_record(username=username, ip=ip, via=via)


def _dashboard_login(c: Client, email: str, password: str, ip: str = "127.0.0.1"):
    return c.post("/accounts/login/", {"email": email, "password": password}, REMOTE_ADDR=ip)


_addresses = itertools.count(1)


def _token(email: str, password: str, ip: str | None = None):
    """One token request; each from its own address unless told (DRF's per-address rate limit of
    the endpoint lives in the cache across tests, and is not what these tests are about)."""
    n = next(_addresses)
    ip = ip or f"10.77.{n // 250}.{n % 250 + 1}"
    return Client().post(
        "/api/v1/auth/token/",
        {"email": email, "password": password, "tenant": "alpha"},
        content_type="application/json",
        REMOTE_ADDR=ip,
    )


def _admin_login(c: Client, email: str, password: str, ip: str = "127.0.0.1", **extra):
    return c.post("/admin/login/?next=/admin/", {"username": email, "password": password, **extra}, REMOTE_ADDR=ip)


# --- the rule -----------------------------------------------------------------------------------


def test_the_fifth_failure_locks_the_name_for_the_lock_time():
    _fail(LIMIT - 1)
    lockout.lockout_check(username="viewer@alpha.test", ip="10.0.0.9")  # four: still allowed
    _fail(1, ip="10.0.0.2")
    with pytest.raises(lockout.LoginLocked) as exc:
        lockout.lockout_check(username="VIEWER@alpha.test", ip="10.0.0.9")  # any case, any address
    assert exc.value.code == "login_locked" and exc.value.status == 429
    assert (
        settings.LOGIN_LOCKOUT_SECONDS - 5 <= exc.value.details["retry_after_seconds"] <= settings.LOGIN_LOCKOUT_SECONDS
    )
    assert exc.value.headers["Retry-After"] == str(exc.value.details["retry_after_seconds"])
    assert "Try again in 15 minutes" in exc.value.message
    lockout.lockout_check(username="someone.else@alpha.test", ip="10.0.0.9")  # other names unaffected


def test_failures_from_one_address_over_many_names_lock_the_address():
    for i in range(settings.LOGIN_LOCKOUT_MAX_FAILURES_PER_IP):
        lockout.failure_record(username=f"user{i}@x.test", ip="10.9.9.9", via="api")
    with pytest.raises(lockout.LoginLocked):
        lockout.lockout_check(username="fresh@x.test", ip="10.9.9.9")
    lockout.lockout_check(username="fresh@x.test", ip="10.9.9.10")


def test_a_success_resets_the_names_count():
    _fail(LIMIT - 1)
    lockout.success_record(username="viewer@alpha.test")
    _fail(LIMIT - 1)
    lockout.lockout_check(username="viewer@alpha.test", ip="10.0.0.1")  # 4 + 4 with a success between


def test_keys_never_hold_the_address_in_clear_and_expire():
    _fail(LIMIT)
    keys = [k.decode() for k in redis_client().scan_iter("login:fail:*")]
    assert keys and not any("viewer@alpha.test" in k for k in keys)
    assert all(redis_client().ttl(k) > 0 for k in keys)


def test_failures_and_lockouts_are_logged_without_the_password(alpha, caplog):
    c = Client()
    with caplog.at_level(logging.WARNING, logger="accounts.lockout"):
        for _ in range(LIMIT):
            _dashboard_login(c, "viewer@alpha.test", WRONG)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert text.count("login failed via=dashboard") == LIMIT and "login locked via=dashboard" in text
    assert WRONG not in text and "viewer@alpha.test" not in text
    assert lockout.name_digest("viewer@alpha.test") in text and "ip=127.0.0.1" in text


# --- each way in ----------------------------------------------------------------------------------


def test_dashboard_form_refuses_even_the_right_password_and_says_when_to_retry(alpha):
    c = Client()
    for _ in range(LIMIT):
        r = _dashboard_login(c, "viewer@alpha.test", WRONG)
        assert r.status_code == 400 and "E-mail or password is wrong." in r.content.decode()
    r = _dashboard_login(c, "viewer@alpha.test", PASSWORD)
    assert r.status_code == 429 and "Try again in 15 minutes" in r.content.decode()
    assert int(r["Retry-After"]) > 0
    assert "_auth_user_id" not in c.session


def test_dashboard_success_resets_the_count(alpha):
    c = Client()
    for _ in range(LIMIT - 1):
        _dashboard_login(c, "viewer@alpha.test", WRONG)
    assert _dashboard_login(c, "viewer@alpha.test", PASSWORD).status_code == 302
    c = Client()
    for _ in range(LIMIT - 1):
        _dashboard_login(c, "viewer@alpha.test", WRONG)
    assert _dashboard_login(c, "viewer@alpha.test", PASSWORD).status_code == 302


def test_token_api_answers_429_login_locked_with_retry_after(alpha):
    for _ in range(LIMIT):
        r = _token("viewer@alpha.test", WRONG)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"
    r = _token("viewer@alpha.test", PASSWORD)
    assert r.status_code == 429
    body = r.json()["error"]
    assert body["code"] == "login_locked" and "Try again in" in body["message"]
    assert int(r["Retry-After"]) == body["details"]["retry_after_seconds"] > 0
    assert "access" not in r.json()


def test_token_api_success_resets_the_count(alpha):
    for _ in range(LIMIT - 1):
        _token("viewer@alpha.test", WRONG)
    assert _token("viewer@alpha.test", PASSWORD).status_code == 200
    for _ in range(LIMIT - 1):
        _token("viewer@alpha.test", WRONG)
    assert _token("viewer@alpha.test", PASSWORD).status_code == 200


def test_admin_login_is_locked_too(alpha, django_user_model):
    django_user_model.objects.create_user(email="desk@platform.test", password=PASSWORD, is_staff=True)
    c = Client()
    for _ in range(LIMIT):
        r = _admin_login(c, "desk@platform.test", WRONG)
        assert r.status_code == 200 and "correct email and password" in r.content.decode()
    r = _admin_login(c, "desk@platform.test", PASSWORD)
    assert r.status_code == 200 and "Try again in 15 minutes" in r.content.decode()
    assert "_auth_user_id" not in c.session


def test_failures_count_across_ways_in(alpha):
    """Two at the API, three at the dashboard: the admin is locked for that name."""
    _token("viewer@alpha.test", WRONG)
    _token("viewer@alpha.test", WRONG)
    c = Client()
    for _ in range(LIMIT - 2):
        _dashboard_login(c, "viewer@alpha.test", WRONG)
    assert _token("viewer@alpha.test", PASSWORD).status_code == 429


def test_the_lock_lifts_when_it_expires(alpha):
    _fail(LIMIT, ip="127.0.0.1")
    assert _token("viewer@alpha.test", PASSWORD).status_code == 429
    for key in redis_client().scan_iter("login:fail:lock:*"):
        redis_client().delete(key)  # what the expiry does after LOGIN_LOCKOUT_SECONDS
    assert _token("viewer@alpha.test", PASSWORD).status_code == 200
