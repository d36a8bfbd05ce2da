"""Role-based hiding of actions, in a real browser: a viewer (and an analyst) walks every page that
has state-changing actions for higher roles — with one of everything to act on in the tenant — and
finds no form, button or htmx control for them; only what the role may do itself (its own
subscriptions, notifications and Telegram link, leaving; for analysts: import, features, training,
backtests, workflows short of approving, acknowledging alerts). The sidebar links no page the role
would get a 403 on. The client test tests/dashboard/test_role_actions.py POSTs the same actions
directly: 403."""

from __future__ import annotations

import pytest

from tenants.models import Role
from tests.conftest import PASSWORD
from tests.dashboard.roles import MODEL, world_build

PAGES = [
    "/app/",
    "/app/api-keys/",
    "/app/members/",
    "/app/data/",
    "/app/features/",
    "/app/models/",
    f"/app/models/{MODEL}/",
    f"/app/models/{MODEL}/v/1/",
    "/app/decisions/",
    "/app/decisions/weights/",
    "/app/positions/",
    "/app/flows/",
    "/app/flows/{flow}/v/1/",
    "/app/performance/",
    "/app/config/",
    "/app/config/?env=staging",
    "/app/config/?env=dev",
    "/app/kill-switch/",
    "/app/backtests/",
    "/app/usage/",
    "/app/billing/",
    "/app/notifications/",
    "/app/notifications/subscriptions/",
    "/app/notifications/deliveries/",
    "/app/notifications/deliveries/?status=dead",
    "/app/notifications/telegram/",
    "/app/notifications/alerts/",
    "/app/notifications/alert-rules/",
    "/app/workflows/",
    "/app/workflows/{workflow}/",
    "/app/workflows/{failed_workflow}/",
]
ADMIN_ONLY_PAGES = ["/app/notifications/webhooks/"]

# what a member may do whatever their role: their own notifications, subscriptions and Telegram
# link, and leaving (their own membership); analysts also bring data in and run the research
OWN = ["/app/notifications/read/", "/app/notifications/subscriptions/", "/app/notifications/telegram/ link",
       "/app/members/{own}/remove/"]  # fmt: skip
ANALYST = ["/app/data/", "/app/features/", "/app/models/", "/app/backtests/", "/app/notifications/alerts/{alert}/ack/",
           "/app/workflows/", "/app/workflows/{workflow}/cancel/", "/app/workflows/{failed_workflow}/cancel/",
           "/app/workflows/{failed_workflow}/retry/"]  # fmt: skip

# each POST control in the page's content: where it posts and the ``action`` it names, if any
CONTROLS_JS = """main => [
  ...[...main.querySelectorAll('form')].filter(f => (f.getAttribute('method') || 'get').toLowerCase() === 'post'
        || f.hasAttribute('hx-post')).map(f => {
    const url = new URL(f.getAttribute('hx-post') || f.getAttribute('action') || location.href, location.href);
    const names = [...f.querySelectorAll('[name=action]')].map(e => e.value).join(',');
    return (url.pathname + ' ' + names).trim();
  }),
  ...[...main.querySelectorAll('[hx-post],[hx-put],[hx-patch],[hx-delete]')].filter(e => e.tagName !== 'FORM')
    .map(e => 'htmx ' + (e.getAttribute('hx-post') || e.getAttribute('hx-put') || e.getAttribute('hx-patch')
                         || e.getAttribute('hx-delete'))),
]"""


def _analyst_onboarding(control: str) -> bool:
    """The overview's getting-started steps an analyst takes (all but deploying)."""
    return control.startswith("/app/onboarding/") and not control.startswith("/app/onboarding/deploy/")


@pytest.fixture(scope="module")
def world(test_database, django_db_blocker):
    import uuid

    from accounts.models import User
    from tenants.models import Membership
    from tenants.services import tenant_provision

    unique = uuid.uuid4().hex[:8]
    with django_db_blocker.unblock():
        tenant, _ = tenant_provision(slug=f"roles-{unique}", plan="pro", owner_email=f"own-{unique}@firm.test",
                                     owner_password=PASSWORD)  # fmt: skip
        owner = Membership.objects.get(tenant=tenant).user
        w = world_build(tenant, owner)
        for role in (Role.VIEWER, Role.ANALYST):
            user = User.objects.create_user(email=f"{role}-{unique}@firm.test", password=PASSWORD)
            w.ids[f"{role}_membership"] = Membership.objects.create(user=user, tenant=tenant, role=role).pk
            w.ids[f"{role}_email"] = user.email
    return w


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ANALYST])
def test_pages_show_no_action_the_role_cannot_use(new_dashboard, world, role):
    allowed = {world.path(a.replace("{own}", f"{{{role}_membership}}")) for a in OWN}
    if role == Role.ANALYST:
        allowed |= {world.path(a) for a in ANALYST}
    d = new_dashboard()
    d.login(world.ids[f"{role}_email"], PASSWORD)
    assert d.page.locator("[data-role]").inner_text() == role
    seen, offending = set(), {}
    for template in PAGES:
        path = world.path(template)
        response = d.page.goto(d.base_url + path, wait_until="domcontentloaded")  # server-rendered controls
        assert response.status == 200, path
        controls = d.page.locator("main").evaluate(CONTROLS_JS)
        seen.update(controls)
        extra = sorted(c for c in set(controls) - allowed if not (role == Role.ANALYST and _analyst_onboarding(c)))
        if extra:
            offending[path] = extra
    assert offending == {}
    # the walk saw the role's own actions (the pages were really there, with their data)
    expected_own = {world.path(f"/app/members/{{{role}_membership}}/remove/"), "/app/notifications/subscriptions/"}
    assert expected_own <= seen
    if role == Role.ANALYST:
        assert {"/app/models/", "/app/backtests/", world.path("/app/notifications/alerts/{alert}/ack/"),
                world.path("/app/workflows/{failed_workflow}/retry/")} <= seen  # fmt: skip

    for path in ADMIN_ONLY_PAGES:  # typed in: the 403 page
        assert d.goto(path).status == 403
        assert d.page.locator("[data-forbidden]").is_visible()
    # and no sidebar link leads to a page the role would be refused
    links = d.page.locator("nav.sidebar a").evaluate_all("els => els.map(e => e.pathname)")
    refused = [p for p in links if p.startswith("/app/") and d.page.request.get(d.base_url + p).status == 403]
    assert refused == []
