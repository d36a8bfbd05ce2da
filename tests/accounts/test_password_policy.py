"""The password policy (AUTH_PASSWORD_VALIDATORS: 12+ characters, not common, not all digits, not
like the e-mail) wherever a password is set, with messages that say what to change."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from accounts import services
from accounts.models import User
from api.errors import ApplicationError
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

WEAK = [
    ("Short-pass1", "at least 12 characters"),
    ("password1234", "too common"),
    ("948372615093", "entirely numeric"),
    ("ada.lovelace.engine", "too similar"),
]


@pytest.mark.parametrize("password, text", WEAK)
def test_the_service_check_names_what_to_change(password, text):
    with pytest.raises(ApplicationError) as exc:
        services.password_check(password, User(email="ada.lovelace@engine.test", first_name="Ada"))
    assert exc.value.code == "weak_password" and text in exc.value.message


def test_signup_and_invitation_refuse_an_eleven_character_password(alpha):
    with pytest.raises(ApplicationError) as exc:
        services.tenant_signup(email="new@firm.test", password="Elevenchar1", slug="firmx")
    assert exc.value.code == "weak_password" and not User.objects.filter(email="new@firm.test").exists()
    _, token = services.invitation_create(
        tenant=alpha.tenant, email="joiner@firm.test", role="viewer", invited_by=alpha.users["owner"]
    )
    with pytest.raises(ApplicationError) as exc:
        services.invitation_accept_new_user(token=token, password="Elevenchar1")
    assert exc.value.code == "weak_password" and not User.objects.filter(email="joiner@firm.test").exists()


def test_profile_password_change_refuses_a_weak_one(alpha):
    c = Client()
    c.force_login(alpha.users["viewer"])
    r = c.post(
        "/accounts/profile/",
        {
            "action": "password",
            "old_password": PASSWORD,
            "new_password1": "Short-pass1",
            "new_password2": "Short-pass1",
        },
    )
    assert r.status_code == 400 and "at least 12 characters" in r.content.decode()
    alpha.users["viewer"].refresh_from_db()
    assert alpha.users["viewer"].check_password(PASSWORD)


def test_admin_user_creation_refuses_a_weak_one(db):
    root = User.objects.create_superuser(email="root@policy.test", password=PASSWORD)
    c = Client()
    c.force_login(root)
    r = c.post(
        "/admin/accounts/user/add/",
        {
            "email": "weak@policy.test",
            "usable_password": "true",
            "password1": "password1234",
            "password2": "password1234",
        },
    )
    assert r.status_code == 200 and "too common" in r.content.decode()
    assert not User.objects.filter(email="weak@policy.test").exists()


def test_createsuperuser_noinput_validates_the_environment_password(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "Short-pass1")
    with pytest.raises(CommandError, match="at least 12 characters"):
        call_command("createsuperuser", "--noinput", "--email", "boss@policy.test", verbosity=0)
    assert not User.objects.filter(email="boss@policy.test").exists()
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", "--noinput", "--email", "boss@policy.test", verbosity=0)
    assert User.objects.get(email="boss@policy.test").is_superuser


def test_createsuperuser_offers_no_bypass(db, monkeypatch):
    from django.contrib.auth.management.commands import createsuperuser as base

    answers = iter(["password1234", "password1234", PASSWORD, PASSWORD])
    monkeypatch.setattr(base.getpass, "getpass", lambda prompt="Password: ": next(answers))
    from accounts.management.commands.createsuperuser import Command

    tty = type("TTY", (), {"isatty": lambda self: True})()
    call_command(Command(), interactive=True, email="tty@policy.test", stdin=tty, verbosity=0)
    user = User.objects.get(email="tty@policy.test")
    assert user.check_password(PASSWORD)  # the weak one was asked again, not taken
    assert not hasattr(base, "input")


def test_provision_tenant_refuses_a_weak_owner_password(db):
    with pytest.raises(CommandError, match="weak_password"):
        call_command("provision_tenant", "weakco", "--owner-email", "o@weakco.test", "--owner-password", "12345678")


def test_demo_passwords_meet_the_policy():
    from ops.management.commands.demo_setup import _policy_password

    kept = "a-kept-demo-password-7"
    assert _policy_password(kept, "demo@example.com") == kept
    fresh = _policy_password("short", "demo@example.com")
    assert fresh != "short" and re.fullmatch(r"[\w-]{16}", fresh)
    validate_password(fresh, User(email="demo@example.com"))
