"""Every main page at 1280 px and at a phone's 390 px, in chromium: nothing wider than the window
(tables scroll inside their card), every visible control has an accessible name, no positive
tabindex, table headers say their scope; and from the keyboard alone — Tab to the "Skip to content"
link, Enter, then Tab — each page's main form and its list's search form reach their submit button,
with a visible focus ring. The pages hold one of everything (tests/dashboard/roles.py)."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD
from tests.dashboard.roles import FLOW, MODEL, world_build

from .support import DESKTOP, PHONE

# page -> the forms whose submit button the keyboard must reach (the page's own form first)
PAGES = {
    "/app/": [],
    "/app/api-keys/": ["api-key", "filter-api-keys"],
    "/app/members/": ["invite", "filter-members"],
    "/app/data/": ["import", "filter-instruments"],
    "/app/features/": ["feature-set", "filter-feature-sets"],
    "/app/models/": ["train", "filter-models", "filter-jobs"],
    f"/app/models/{MODEL}/": ["deploy", "filter-versions"],
    f"/app/models/{MODEL}/v/1/": [],
    "/app/decisions/": [],
    "/app/decisions/weights/": [],
    "/app/positions/": [],
    "/app/flows/": ["flow", "filter-flows"],
    f"/app/flows/{FLOW}/v/1/": [],
    "/app/performance/": [],
    "/app/config/?env=dev": ["config", "filter-config-history"],
    "/app/kill-switch/": ["kill-switch"],
    "/app/backtests/": ["backtest"],
    "/app/workflows/": [],
    "/app/usage/": [],
    "/app/billing/": ["filter-invoices"],
    "/app/notifications/": [],
    "/app/notifications/subscriptions/": ["subscription", "filter-subscriptions"],
    "/app/notifications/deliveries/": ["filter-deliveries"],
    "/app/notifications/webhooks/": ["webhook"],
    "/app/notifications/telegram/": [],
    "/app/notifications/alerts/": [],
    "/app/notifications/alert-rules/": ["alert-rule", "filter-alert-rules"],
}

# visible form controls without an accessible name; positive tabindex; header cells without scope
AUDIT_JS = """main => {
  const visible = e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length)
    && getComputedStyle(e).visibility !== 'hidden';
  const text = e => (e ? e.textContent : '').trim();
  const named = e => (e.getAttribute('aria-label') || '').trim()
    || (e.getAttribute('aria-labelledby') || '').split(/\\s+/).map(id => text(document.getElementById(id))).join('')
    || [...(e.labels || [])].map(text).join('') || (e.getAttribute('title') || '').trim()
    || (['BUTTON', 'A'].includes(e.tagName) ? text(e) || [...e.querySelectorAll('[aria-label]')].length : '');
  const describe = e => e.tagName.toLowerCase() + (e.name ? `[name=${e.name}]` : '') + (e.id ? '#' + e.id : '');
  const controls = [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')];
  return {
    unnamed: controls.filter(e => visible(e) && !named(e)).map(describe),
    positive_tabindex: [...document.querySelectorAll('[tabindex]')].filter(e => e.tabIndex > 0).map(describe),
    th_without_scope: [...main.querySelectorAll('th:not([scope])')].map(e => text(e).slice(0, 30)),
  };
}"""


@pytest.fixture(scope="module")
def owner(test_database, django_db_blocker):
    import uuid

    from tenants.models import Membership
    from tenants.services import tenant_provision

    unique = uuid.uuid4().hex[:8]
    email = f"layout-{unique}@firm.test"
    with django_db_blocker.unblock():
        tenant, _ = tenant_provision(slug=f"layout-{unique}", plan="pro", owner_email=email, owner_password=PASSWORD)
        world_build(tenant, Membership.objects.get(tenant=tenant).user)
    return email


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
def test_every_main_page_fits_and_names_its_controls(new_dashboard, owner, viewport):
    d = new_dashboard(viewport)
    d.login(owner, PASSWORD)
    problems = {}
    for path in PAGES:
        response = d.goto(path)
        assert response.status == 200, path
        found = {"overflow_px": d.horizontal_overflow(), **d.page.locator("main").evaluate(AUDIT_JS)}
        found = {k: v for k, v in found.items() if v}
        if found:
            problems[path] = found
    assert problems == {}


def _tab_to(d, selector: str, limit: int = 250) -> int:
    """Press Tab until ``selector`` has the focus; the number of presses (0: never reached)."""
    for n in range(1, limit + 1):
        d.page.keyboard.press("Tab")
        if d.page.evaluate("s => document.activeElement === document.querySelector(s)", selector):
            return n
    return 0


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
def test_the_keyboard_reaches_every_main_form_past_the_skip_link(new_dashboard, owner, viewport):
    d = new_dashboard(viewport)
    d.login(owner, PASSWORD)
    unreached = []
    for path, forms in PAGES.items():
        if not forms:
            continue
        d.goto(path)
        d.page.keyboard.press("Tab")  # the first stop on every page
        skip = d.page.evaluate(
            "() => [document.activeElement.textContent, document.activeElement.getBoundingClientRect().top]"
        )
        assert skip[0].strip() == "Skip to content" and skip[1] >= 0, path  # on screen while focused
        d.page.keyboard.press("Enter")
        assert d.page.evaluate("() => document.activeElement.id") == "content", path
        for form in forms:
            button = f'form[data-form="{form}"] button[type="submit"], form[data-form="{form}"] button:not([type])'
            assert d.page.locator(button).count(), (path, form)
            d.page.evaluate("() => document.getElementById('content').focus()")  # start from the top of main
            if not _tab_to(d, button):
                unreached.append((path, form))
                continue
            outline = d.page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("", "none"), (path, form)  # the focus ring shows
    assert unreached == []


def test_a_list_filters_and_pages_in_place_with_htmx(new_dashboard, owner):
    """The search form reloads only its list (the URL follows, for bookmarks and Back); a page's
    'Loading…' shows while the answer is on its way; a failed answer says so and keeps the list."""
    d = new_dashboard(DESKTOP)
    d.login(owner, PASSWORD)
    d.goto("/app/members/")
    d.page.evaluate("""() => {
      window.__kept = true;  // gone if the whole page reloaded
      document.addEventListener('htmx:beforeSend', () => {  // what the page shows while the answer is on its way
        window.__loading = [getComputedStyle(document.getElementById('list-members-loading')).visibility,
                            document.getElementById('list-members').getAttribute('aria-busy')];
      });
    }""")
    d.page.fill("#list-members-q", "target-")
    with d.page.expect_response(lambda r: "/app/members/?" in r.url):
        d.page.locator('form[data-form="filter-members"] button[type="submit"]').click()
    d.htmx_settled()
    assert d.page.evaluate("() => window.__kept") is True
    assert d.page.evaluate("() => window.__loading") == ["visible", "true"]
    assert d.page.locator("#list-members-loading").is_hidden()
    assert "q=target-" in d.page.url and "per_page" not in d.page.url  # only what is set
    assert d.page.locator("[data-members] tbody tr").count() == 1
    assert d.page.locator("[data-clear-filters]").first.is_visible()
    d.page.locator("[data-clear-filters]").first.click()
    d.htmx_settled()
    assert d.page.locator("[data-members] tbody tr").count() >= 2 and "q=" not in d.page.url

    # the server fails: the list stays, a message says so (role=alert), the next try clears it
    d.page.route("**/app/members/?*", lambda route: route.fulfill(status=500, body="boom"))
    d.page.fill("#list-members-q", "x")
    d.page.locator('form[data-form="filter-members"] button[type="submit"]').click()
    d.page.wait_for_selector("[data-htmx-error]")
    assert "server failed (500)" in d.page.locator("[data-htmx-error]").inner_text()
    assert d.page.locator("[data-members] tbody tr").count() >= 2
    d.page.unroute("**/app/members/?*")
    d.page.locator('form[data-form="filter-members"] button[type="submit"]').click()
    d.htmx_settled()
    assert d.page.locator("[data-htmx-error]").count() == 0
