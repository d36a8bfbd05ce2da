"""Helpers for dashboard view tests."""

from django.test import Client

from tenants.middleware import SESSION_TENANT_KEY

HX = {"HTTP_HX_REQUEST": "true"}


def dashboard_client(fx, role) -> Client:
    """A browser-like client logged in as ``fx``'s member with ``role``, on ``fx``'s tenant."""
    c = Client()
    c.force_login(fx.users[role])
    s = c.session
    s[SESSION_TENANT_KEY] = fx.tenant.pk
    s.save()
    return c
