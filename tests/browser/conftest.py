"""Fixtures for browser tests: one real gunicorn on the test database for the session, one
chromium, and a fresh browser context (cookies, storage) per test.

The server is another process, so it only sees committed rows: browser tests never use the ``db``
fixture's rolled-back transaction. They create what they need with unique names under
``committed`` (the test database is dropped at the end of the session anyway).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import service_env

from .support import (
    DESKTOP,
    CeleryWorker,
    ChannelsServer,
    Dashboard,
    FeedEdge,
    WebServer,
    browser_launch,
    chromium_missing_reason,
    free_port,
)

# Playwright's sync API keeps an asyncio loop on the main thread; the ORM calls these tests make
# between browser steps are ordinary blocking calls, so Django's async guard is lifted for them.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

_missing = chromium_missing_reason()


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            if _missing:
                item.add_marker(pytest.mark.skip(reason=_missing))


@pytest.fixture(scope="session")
def mail_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mail")


@pytest.fixture(scope="session")
def test_database(django_db_setup, django_db_blocker):
    """Make sure the session runs on the test database. pytest-django creates it only when some
    collected test asks for ``db``; a run of browser tests alone asks for none (they must not run
    inside a rolled-back transaction), and would otherwise reach the development database."""
    from django.test.utils import setup_databases, teardown_databases

    from config.settings.services import _db_url, _parse_db

    if connection.settings_dict["NAME"] != _parse_db(_db_url)["NAME"]:
        yield  # already switched by django_db_setup
        return
    with django_db_blocker.unblock():
        created = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        teardown_databases(created, verbosity=0)


@pytest.fixture(scope="session")
def midtrans():
    """A local server speaking Midtrans' protocol; the web server below is configured to use it."""
    from tests.billing.gateway import FakeMidtrans

    gateway = FakeMidtrans()
    yield gateway
    gateway.close()


@pytest.fixture(scope="session")
def web(test_database, django_db_blocker, mail_dir, midtrans):
    """The app served by gunicorn against the test database and the tests' Redis databases."""

    with django_db_blocker.unblock():
        from tenants.services import tenant_template_ensure

        tenant_template_ensure()
        env = {
            **service_env(),
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(mail_dir),
            "DJANGO_DEBUG": "false",
            "WS_FEED_PORT": str(free_port()),  # where pages point the live feed (see ``feed_edge``)
            "WS_PORT": str(free_port()),  # where pages point the notification bell (see ``channels_server``)
            "MIDTRANS_SERVER_KEY": midtrans.server_key,
            "MIDTRANS_SNAP_URL": midtrans.url,
            "MIDTRANS_API_URL": midtrans.url,
        }
    server = WebServer(env).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def feed_edge(web):
    """The decision feed's edge server (``run_feed_edge``) on the port the web server's pages name."""
    edge = FeedEdge(web.env).start()
    yield edge
    edge.stop()


@pytest.fixture(scope="session")
def channels_server(web):
    """daphne (``config.asgi``: the bell's ``ws/notifications/``) on the port the web server's pages name."""
    server = ChannelsServer(web.env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def celery_worker(web):
    """A Celery worker process on the server's broker and database: jobs the pages queue really run.
    One a module: a later module in the session (the staff health page's) sees no worker it did not
    start."""
    worker = CeleryWorker(web.env).start()
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def browser():
    """One chromium a module. Playwright's sync API runs an event loop on this thread while it is
    open: closed after the module, so a later module's ``asyncio.run`` (WebSocket and consumer
    tests) finds none running, whatever order the files run in (xdist deals them out)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = browser_launch(p)
        yield b
        b.close()


@pytest.fixture
def new_dashboard(browser, web):
    """Factory: a Dashboard in a fresh browser context (its own cookies) at a given viewport."""
    contexts, violations = [], []

    def make(viewport: dict | None = None) -> Dashboard:
        ctx = browser.new_context(viewport=viewport or DESKTOP)
        ctx.set_default_timeout(15_000)
        contexts.append(ctx)
        page = ctx.new_page()
        # the pages must work under their Content-Security-Policy: any violation fails the test
        page.on(
            "console",
            lambda m: (
                violations.append(f"{page.url} {m.location}: {m.text}") if "Content Security Policy" in m.text else None
            ),
        )
        return Dashboard(page, web.base_url)

    yield make
    for ctx in contexts:
        ctx.close()
    assert violations == [], "the Content-Security-Policy blocked something on a page"


@pytest.fixture
def dashboard(new_dashboard) -> Dashboard:
    return new_dashboard()


@pytest.fixture
def committed(test_database, django_db_blocker):
    """``with committed(): ...`` — ORM calls that commit at once, visible to the server."""
    return django_db_blocker.unblock


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]
