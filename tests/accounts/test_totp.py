"""Two-factor log-in for staff (accounts/totp.py, accounts/admin_login.py): RFC 6238 codes, the
secret only ever stored encrypted, enrolment from /accounts/two-factor/, and Django admin's login
asking for the code — while staff without an authenticator log in as before."""

from __future__ import annotations

import base64
import logging
import time
from io import StringIO
from urllib.parse import parse_qs, urlparse

import pytest
from django.core.management import call_command
from django.test import Client

from accounts import totp
from accounts.models import TotpDevice, User
from api.errors import ApplicationError
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return User.objects.create_user(email="desk@platform.test", password=PASSWORD, is_staff=True, is_superuser=True)


def _secret_of(enrolment: dict) -> bytes:
    b32 = enrolment["secret"]
    return base64.b32decode(b32 + "=" * (-len(b32) % 8))


def _enrolled(user) -> bytes:
    secret = _secret_of(totp.totp_enrol_start(user=user))
    totp.totp_enrol_confirm(user=user, code=totp.totp(secret, time.time() - 30))  # a step ago: later ones stay fresh
    return secret


def _admin_login(c: Client, password: str = PASSWORD, code: str | None = None, email: str = "desk@platform.test"):
    data = {"username": email, "password": password}
    if code is not None:
        data["otp_code"] = code
    return c.post("/admin/login/?next=/admin/", data)


# --- the algorithm and the secret at rest --------------------------------------------------------


def test_rfc_6238_test_vectors():
    secret = b"12345678901234567890"  # RFC 6238 appendix B, SHA-1
    for ts, code in [(59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"), (20000000000, "65353130")]:
        assert totp.hotp(secret, totp.step_at(ts), digits=8) == code
    assert totp.totp(secret, 59) == "287082"


def test_the_secret_is_stored_encrypted_and_bound_to_the_user(staff):
    secret = _secret_of(totp.totp_enrol_start(user=staff))
    device = TotpDevice.objects.get(user=staff)
    blob = bytes(device.secret_ciphertext)
    assert secret not in blob and base64.b32encode(secret) not in blob and len(blob) == 12 + len(secret) + 16
    assert totp.secret_decrypt(blob, user_id=staff.pk) == secret
    with pytest.raises(ApplicationError) as exc:  # copied onto another user: does not decrypt
        totp.secret_decrypt(blob, user_id=staff.pk + 1)
    assert exc.value.code == "totp_unreadable"
    # a fresh nonce each time: the same secret never gives the same ciphertext
    assert totp.secret_encrypt(secret, user_id=staff.pk) != totp.secret_encrypt(secret, user_id=staff.pk)


def test_codes_a_step_either_side_pass_once_each(staff):
    secret = _enrolled(staff)
    now = time.time() + 60
    assert not totp.totp_verify(user=staff, code=totp.totp(secret, now - 90), now=now)  # 3 steps ago
    assert totp.totp_verify(user=staff, code=totp.totp(secret, now + 30), now=now)  # next step (clock drift)
    assert not totp.totp_verify(user=staff, code=totp.totp(secret, now + 30), now=now)  # replayed
    assert not totp.totp_verify(user=staff, code=totp.totp(secret, now), now=now)  # older than one used
    assert not totp.totp_verify(user=staff, code="12345", now=now) and not totp.totp_verify(user=staff, code="abcdef")


# --- enrolment page --------------------------------------------------------------------------------


def test_enrolment_shows_the_uri_once_and_a_code_turns_it_on(staff, caplog):
    c = Client()
    c.force_login(staff)
    with caplog.at_level(logging.DEBUG):
        r = c.get("/accounts/two-factor/")
    assert r.status_code == 200 and r["Cache-Control"] == "no-store"
    html = r.content.decode()
    uri = html.split("data-otpauth-uri>")[1].split("<")[0].replace("&amp;", "&")
    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    b32 = parse_qs(parsed.query)["secret"][0]
    assert f"data-totp-secret>{b32}<" in html
    assert b32 not in caplog.text  # never logged
    secret = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    # a wrong code: refused, still off, and the secret is not shown again
    r = c.post("/accounts/two-factor/", {"action": "confirm", "code": "000000"})
    assert r.status_code == 400 and "doesn&#x27;t match" in r.content.decode() and b32 not in r.content.decode()
    assert not totp.totp_enabled(staff)
    r = c.post("/accounts/two-factor/", {"action": "confirm", "code": totp.totp(secret)})
    assert r.status_code == 302
    assert totp.totp_enabled(staff)
    assert 'data-two-factor="on"' in c.get("/accounts/two-factor/").content.decode()


def test_reloading_before_confirming_draws_a_new_secret(staff):
    first = totp.totp_enrol_start(user=staff)
    second = totp.totp_enrol_start(user=staff)
    assert first["secret"] != second["secret"]
    with pytest.raises(ApplicationError):
        totp.totp_enrol_confirm(user=staff, code=totp.totp(_secret_of(first)))
    totp.totp_enrol_confirm(user=staff, code=totp.totp(_secret_of(second)))


def test_enrolment_is_for_staff_only(alpha):
    c = Client()
    c.force_login(alpha.users["owner"])
    assert c.get("/accounts/two-factor/").status_code == 403
    assert not TotpDevice.objects.exists()
    with pytest.raises(ApplicationError) as exc:
        totp.totp_enrol_start(user=alpha.users["owner"])
    assert exc.value.code == "staff_only" and exc.value.status == 403


def test_turning_off_needs_a_current_code(staff):
    secret = _enrolled(staff)
    c = Client()
    c.force_login(staff)
    r = c.post("/accounts/two-factor/", {"action": "disable", "code": "000000"})
    assert r.status_code == 400 and totp.totp_enabled(staff)
    r = c.post("/accounts/two-factor/", {"action": "disable", "code": totp.totp(secret)})
    assert r.status_code == 302 and not TotpDevice.objects.filter(user=staff).exists()


# --- Django admin's log-in ---------------------------------------------------------------------------


def test_admin_login_refused_without_or_with_a_wrong_code(staff):
    _enrolled(staff)
    c = Client()
    r = _admin_login(c)
    assert r.status_code == 200 and "current 6-digit code" in r.content.decode()
    assert "_auth_user_id" not in c.session
    r = _admin_login(c, code="000000")
    assert r.status_code == 200 and "current 6-digit code" in r.content.decode()
    assert "_auth_user_id" not in c.session
    assert c.get("/admin/").status_code == 302


def test_admin_login_accepted_with_the_current_code(staff):
    secret = _enrolled(staff)
    c = Client()
    code = totp.totp(secret)  # once: a second call may fall in the next 30-second step
    r = _admin_login(c, code=code)
    assert r.status_code == 302 and r["Location"] == "/admin/"
    assert c.get("/admin/").status_code == 200
    # the same code again, from another browser: spent
    r = _admin_login(Client(), code=code)
    assert r.status_code == 200 and "current 6-digit code" in r.content.decode()


def test_a_wrong_password_with_the_right_code_is_still_refused(staff):
    secret = _enrolled(staff)
    r = _admin_login(Client(), password="not-the-password-1", code=totp.totp(secret))
    assert r.status_code == 200 and "correct email and password" in r.content.decode()


def test_wrong_codes_count_towards_the_lockout(staff, settings):
    _enrolled(staff)
    c = Client()
    for _ in range(settings.LOGIN_LOCKOUT_MAX_FAILURES):
        _admin_login(c, code="000000")
    r = _admin_login(c, code="000000")
    assert "Try again in" in r.content.decode()


def test_a_dashboard_session_does_not_open_the_admin_for_an_enrolled_person(staff):
    """Same session cookie: logging in through the dashboard (password only) must not skip the code."""
    secret = _enrolled(staff)
    c = Client()
    assert c.post("/accounts/login/", {"email": "desk@platform.test", "password": PASSWORD}).status_code == 302
    r = c.get("/admin/")
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")
    assert _admin_login(c, code=totp.totp(secret)).status_code == 302
    assert c.get("/admin/").status_code == 200


def test_staff_without_an_authenticator_log_in_as_before(staff):
    c = Client()
    r = _admin_login(c)
    assert r.status_code == 302 and c.get("/admin/").status_code == 200
    c2 = Client()
    c2.force_login(staff)  # a dashboard session opens the admin too: nothing to prove
    assert c2.get("/admin/").status_code == 200


def test_totp_reset_command_removes_the_authenticator(staff):
    _enrolled(staff)
    out = StringIO()
    call_command("totp_reset", "DESK@platform.test", stdout=out)
    assert "removed" in out.getvalue() and not totp.totp_enabled(staff)
    assert _admin_login(Client()).status_code == 302


def test_a_master_key_rotation_moves_the_secret_at_the_next_code(staff, settings):
    secret = _enrolled(staff)
    old_id, old_key = settings.FIELD_ENCRYPTION_KEY_ID, settings.FIELD_ENCRYPTION_KEY
    settings.FIELD_ENCRYPTION_KEY = base64.b64encode(b"n" * 32).decode()
    settings.FIELD_ENCRYPTION_KEY_ID = "k-new"
    settings.FIELD_ENCRYPTION_OLD_KEYS = {old_id: old_key}
    assert totp.totp_verify(user=staff, code=totp.totp(secret))
    device = TotpDevice.objects.get(user=staff)
    assert device.key_id == "k-new"
    assert totp.secret_decrypt(device.secret_ciphertext, user_id=staff.pk, key_id="k-new") == secret
    settings.FIELD_ENCRYPTION_OLD_KEYS = {}  # the old key retired for good: still readable
    assert totp.totp_verify(user=staff, code=totp.totp(secret, time.time() + 30))
