"""Browser-test plumbing later issues reuse: Debian's chromium under Playwright, a real gunicorn
server on a free port, and ``Dashboard`` — a page helper that knows the shell (log in, navigate,
fill a form, read field errors, check there is no horizontal overflow).

    def test_something(dashboard):            # fixture from tests/browser/conftest.py
        dashboard.login(email, password)
        dashboard.nav("API keys")
        dashboard.submit("api-key", name="bot", scopes=["read"])
        assert dashboard.field_errors("name") == []

Never ``playwright install``: the browser is /usr/bin/chromium (``CHROMIUM_PATH`` overrides).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# The flags the machine's own probe uses: without the background-networking ones chromium keeps
# trying to reach Google and the closed network refuses it.
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
ROOT = Path(__file__).resolve().parents[2]


def chromium_missing_reason() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return (
            f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install -y chromium; "
            "CI's .ci/run installs it). Never 'playwright install'."
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests need the playwright package (pip install -r requirements-dev.txt)"
    return None


def browser_launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _terminate(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class WebServer:
    """The project's real WSGI server (gunicorn, like ``make run``) in a subprocess."""

    def __init__(self, env: dict[str, str], port: int | None = None):
        self.port = port or free_port()
        self.base_url = f"http://localhost:{self.port}"
        self.env = {**os.environ, **env, "HTTP_PORT": str(self.port), "WEB_WORKERS": "1"}
        self.proc: subprocess.Popen | None = None
        self.log = ROOT / ".data" / f"browser-server-{self.port}.log"

    def start(self, timeout: float = 30) -> WebServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"web server exited early; see {self.log}:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"web server did not answer /health within {timeout}s; see {self.log}")

    def stop(self) -> None:
        _terminate(self.proc)


class FeedEdge:
    """The decision feed's edge server (``manage.py run_feed_edge``, the Procfile's ``edge``) on
    ``WS_FEED_PORT`` of ``env``."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.port = int(env["WS_FEED_PORT"])
        self.proc: subprocess.Popen | None = None

    def start(self) -> FeedEdge:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_feed_edge", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("decision feed on"):
            self.stop()
            raise RuntimeError(f"the feed edge server did not start: {line!r}")
        return self

    def stop(self) -> None:
        _terminate(self.proc)


class ChannelsServer:
    """daphne serving ``config.asgi`` (the Procfile's ``ws``: ``ws/notifications/``, ``ws/training/``)
    on ``WS_PORT`` of ``env``."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.port = int(env["WS_PORT"])
        self.proc: subprocess.Popen | None = None
        self.log = ROOT / ".data" / f"browser-daphne-{self.port}.log"

    def start(self, timeout: float = 30) -> ChannelsServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited early; see {self.log}:\n{self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"daphne did not listen on {self.port} within {timeout}s; see {self.log}")

    def stop(self) -> None:
        _terminate(self.proc)


class CeleryWorker:
    """A Celery worker (the Procfile's ``worker``, threads pool) in a subprocess with ``env``: it
    consumes what the server under test queues (same broker, no test key prefix) and runs it on the
    test database. Stale messages of an earlier session are purged at start."""

    def __init__(self, env: dict[str, str], queues: str = "celery"):
        self.env = env
        self.queues = queues
        self.proc: subprocess.Popen | None = None
        self.log = ROOT / ".data" / f"browser-worker-{os.getpid()}.log"

    def start(self, timeout: float = 60) -> CeleryWorker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_bytes(b"")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", self.queues, "--pool", "threads",
             "--concurrency", "2", "--purge", "--without-gossip", "--without-mingle", "-l", "info",
             "-n", f"browser-{os.getpid()}@%h"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited early; see {self.log}:\n{self.log.read_text()[-2000:]}")
            if b" ready." in self.log.read_bytes():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"celery worker was not ready within {timeout}s; see {self.log}")

    def stop(self) -> None:
        _terminate(self.proc)


def mail_texts(directory: Path) -> list[str]:
    """Plain-text bodies of the messages Django's file e-mail backend wrote (decoded)."""
    import email
    from email import policy

    texts = []
    for path in sorted(Path(directory).iterdir()):
        for chunk in path.read_text().split("\n" + "-" * 79 + "\n"):
            if chunk.strip():
                msg = email.message_from_string(chunk.strip(), policy=policy.default)
                body = msg.get_body(preferencelist=("plain",))
                texts.append(body.get_content() if body else "")
    return texts


class Dashboard:
    """A page object for the dashboard shell. Selectors are the ``data-*`` hooks in templates/."""

    def __init__(self, page, base_url: str):
        self.page = page
        self.base_url = base_url.rstrip("/")

    # navigation
    def goto(self, path: str):
        response = self.page.goto(self.base_url + path)
        self.page.wait_for_load_state("networkidle")
        return response

    def nav(self, label: str) -> None:
        """Follow a sidebar link, opening the menu first at phone width."""
        toggle = self.page.locator("[data-nav-toggle]")
        if toggle.is_visible():
            toggle.click()
        self.page.locator("nav.sidebar").get_by_role("link", name=label).click()
        self.page.wait_for_load_state("networkidle")

    @property
    def path(self) -> str:
        return self.page.url.removeprefix(self.base_url)

    # accounts
    def login(self, email: str, password: str) -> None:
        self.goto("/accounts/login/")
        self.submit("login", email=email, password=password)

    def logout(self) -> None:
        self.page.locator("[data-logout]").click()
        self.page.wait_for_load_state("networkidle")

    def switch_tenant(self, name: str) -> None:
        self.page.select_option("#tenant-switch", label=name)
        self.page.wait_for_load_state("networkidle")

    # forms
    def fill(self, form: str, **fields) -> None:
        """Fill ``<form data-form=form>``: strings into inputs/selects, lists tick checkboxes, a
        plain value for a radio group picks that value."""
        f = self.page.locator(f'form[data-form="{form}"]')
        for name, value in fields.items():
            controls = f.locator(f'[name="{name}"]')
            kind = controls.first.get_attribute("type") or controls.first.evaluate("e => e.tagName.toLowerCase()")
            if kind == "checkbox":
                wanted = set(value if isinstance(value, list | tuple | set) else [value])
                for i in range(controls.count()):
                    box = controls.nth(i)
                    box.set_checked(box.get_attribute("value") in wanted)
            elif kind == "radio":
                f.locator(f'[name="{name}"][value="{value}"]').check()
            elif kind == "select":
                controls.first.select_option(str(value))
            else:
                controls.first.fill(str(value))

    def submit(self, form: str, **fields) -> None:
        """Fill and submit; returns once the page (or, for an htmx form, its swapped panel) is in."""
        self.fill(form, **fields)
        f = self.page.locator(f'form[data-form="{form}"]')
        button = f.locator('button[type="submit"]')
        if f.get_attribute("hx-post"):
            with self.page.expect_response(lambda r: r.request.method == "POST"):
                button.click()
            self.htmx_settled()
        else:
            button.click()
            self.page.wait_for_load_state("networkidle")

    def htmx_settled(self) -> None:
        """Wait until no htmx request is in flight and the last swap has settled."""
        self.page.wait_for_function(
            "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')"
        )

    def field_errors(self, name: str) -> list[str]:
        return [t.strip() for t in self.page.locator(f'[data-field-errors="{name}"] li').all_inner_texts()]

    def form_errors(self) -> str:
        loc = self.page.locator("[data-form-errors]")
        return loc.first.inner_text() if loc.count() else ""

    def messages(self) -> str:
        return " ".join(self.page.locator("ul.messages li").all_inner_texts())

    # layout
    def horizontal_overflow(self) -> int:
        """Pixels the page is wider than the viewport (0 = none)."""
        return self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")

    def screenshot(self, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
