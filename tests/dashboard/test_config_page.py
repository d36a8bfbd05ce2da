"""The configuration page: each environment's typed settings, saving a version, promoting with
the diff shown first, restoring an old version; viewers read only; bad values say what is wrong
and store nothing; another tenant's configuration is never shown."""

import pytest
from django_tenants.utils import schema_context

from configuration.models import ConfigVersion
from tenants.models import Role
from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db
PAGE = "/app/config/"


def _form(**values) -> dict:
    return {"feed.publish": "on", "decisions.min_confidence": "0", **values}


def _stored(fx, env: str) -> list[int]:
    with schema_context(fx.tenant.schema_name):
        return list(ConfigVersion.objects.filter(environment=env).values_list("version", flat=True))


def test_an_admin_saves_promotes_and_restores(alpha):
    admin = dashboard_client(alpha, Role.ADMIN)
    page = admin.get(PAGE + "?env=dev").content.decode()
    assert "controls.max_position" in page and "Nothing stored yet" in page and 'data-form="config"' in page
    r = admin.post(PAGE + "dev/change/", _form(**{"controls.max_position": "5", "comment": "tighter"}), follow=True)
    assert "1 setting(s) changed (controls.max_position)" in r.content.decode()
    assert _stored(alpha, "dev") == [1]
    # staging shows what promoting dev would change, then promotes it
    page = admin.get(PAGE + "?env=staging").content.decode()
    assert "Promote dev → staging" in page and "controls.max_position" in page
    admin.post(PAGE + "staging/change/", {"action": "promote"})
    with schema_context(alpha.tenant.schema_name):
        row = ConfigVersion.objects.get(environment="staging")
        assert row.based_on == "dev@1" and row.values["controls"]["max_position"] == 5.0
    # a second dev version, then restore version 1
    admin.post(PAGE + "dev/change/", _form(**{"controls.max_position": "9"}))
    r = admin.post(PAGE + "dev/change/", {"action": "restore", "version": "1"}, follow=True)
    assert "controls.max_position" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        last = ConfigVersion.objects.filter(environment="dev").order_by("-version").first()
        assert last.version == 3 and last.source == "rollback" and last.values["controls"]["max_position"] == 5.0


def test_a_bad_value_says_what_is_wrong_and_stores_nothing(alpha):
    admin = dashboard_client(alpha, Role.ADMIN)
    r = admin.post(PAGE + "prod/change/", _form(**{"controls.price_collar_pct": "250"}), follow=True)
    assert "controls.price_collar_pct must be at most 100" in r.content.decode()
    r = admin.post(PAGE + "prod/change/", _form(**{"controls.max_order_value": "lots"}), follow=True)
    assert "controls.max_order_value must be a number" in r.content.decode()
    assert _stored(alpha, "prod") == []


def test_viewers_read_but_cannot_change_and_another_tenant_is_never_shown(alpha, beta):
    admin = dashboard_client(alpha, Role.ADMIN)
    admin.post(PAGE + "prod/change/", _form(**{"controls.max_position": "7"}))
    viewer = dashboard_client(alpha, Role.VIEWER)
    page = viewer.get(PAGE).content.decode()
    assert 'value="7.0"' in page and "Admins and owners change the configuration" in page
    r = viewer.post(PAGE + "prod/change/", _form(**{"controls.max_position": "1"}))
    assert r.status_code == 403 and _stored(alpha, "prod") == [1]
    other = dashboard_client(beta, Role.OWNER).get(PAGE).content.decode()
    assert 'value="7.0"' not in other and "the defaults" in other
