"""Every state-changing action of the dashboard, POSTed directly by a member whose role is below
the one it needs (viewer: everything above reading; analyst: everything for admins), is refused
with 403 (the 403 page, or the form saying why) and changes nothing. The browser walk
(tests/browser/test_role_hiding.py) checks the same roles never see these controls."""

import pytest

from tenants.models import Role
from tests.dashboard.roles import ACTIONS, forbidden_actions, world_build, world_state
from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ANALYST])
def test_actions_above_the_role_are_refused_with_403_and_change_nothing(alpha, role):
    world = world_build(alpha.tenant, alpha.users[Role.OWNER])
    before = world_state(alpha.tenant)
    client = dashboard_client(alpha, role)
    answered = {}
    for what, _, path, data in forbidden_actions(role):
        r = client.post(world.path(path), data)
        answered[what] = r.status_code
    assert {what: status for what, status in answered.items() if status != 403} == {}
    assert world_state(alpha.tenant) == before
    assert len(answered) == len(ACTIONS) if role == Role.VIEWER else len(answered) < len(ACTIONS)


def test_the_same_actions_are_allowed_to_the_roles_that_have_them(alpha):
    """The matrix is not vacuous: with the role it names, each action gets past the role check (it
    may still be refused for its input, never with 403)."""
    world = world_build(alpha.tenant, alpha.users[Role.OWNER])
    refused = {}
    for what, least, path, data in ACTIONS:
        r = dashboard_client(alpha, least).post(world.path(path), data)
        if r.status_code == 403:
            refused[what] = (least, r.content.decode()[:200])
    assert refused == {}
