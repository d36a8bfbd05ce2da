"""The issue's "done when": a newcomer signs up in the browser and reaches live decisions of their
own trained model using only the UI — the Getting started checklist's steps, a real Celery worker
training the model, the live replay process continuing the sample market, the decision stream
deciding with the deployed version, and the overview's ticker showing it over the WebSocket."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]


class _Manage:
    """``manage.py <args>`` in a subprocess with the web server's environment."""

    def __init__(self, env: dict[str, str], *args: str):
        self.log = ROOT / ".data" / f"browser-{args[0]}-{os.getpid()}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def live_market(web, unique):
    """The decision stream and the live replay for the tenant the test signs up (``firm-<unique>``),
    as ``make run`` starts them (Procfile ``stream`` and ``replay``), looking for it every second."""
    slug = f"firm-{unique}"
    stream = _Manage(web.env, "run_decision_stream", "--tenant", slug, "--rescan", "1")
    replay = _Manage(web.env, "replay_market", "--all", "--tenant", slug)
    yield slug
    logs = {"stream": stream.stop(), "replay": replay.stop()}
    if os.environ.get("BROWSER_LOGS"):
        print(logs)


def _step(d, key: str):
    return d.page.locator(f'[data-step="{key}"]')


def _click_step(d, action: str) -> None:
    d.page.locator(f'[data-step-action="{action}"]').click()
    d.page.wait_for_load_state("networkidle")


def test_a_newcomer_signs_up_and_reaches_live_decisions_of_their_own_model(
    dashboard, web, feed_edge, celery_worker, live_market, unique
):
    d = dashboard
    started = time.monotonic()
    d.goto("/accounts/signup/")
    d.submit(
        "signup",
        full_name="Nina Newcomer",
        email=f"nina-{unique}@firm.test",
        password1=PASSWORD,
        password2=PASSWORD,
        name=f"Firm {unique}",
        slug=live_market,
        plan="pro",
    )
    assert d.path == "/app/" and "Getting started" in d.messages()
    assert d.page.locator("[data-checklist]").is_visible()
    assert d.page.locator("[data-checklist] h2").inner_text().endswith("0 of 5 done")

    # 1. data: the sample, continued live
    _click_step(d, "sample")
    assert "now continues live" in d.messages()
    assert _step(d, "data").get_attribute("data-done") == "true"

    # 2. the starter feature set
    _click_step(d, "features")
    assert _step(d, "features").get_attribute("data-done") == "true"

    # 3. train: the job page shows the worker's progress until the version is stored
    _click_step(d, "train")
    assert d.path.startswith("/app/models/jobs/")
    d.page.locator('[data-job-panel][data-state="succeeded"]').wait_for(timeout=180_000)
    version = d.page.locator("[data-job-version]").inner_text().strip()
    assert version == "my-first-model@1"

    # 4. deploy it (it beats its baselines on the sample's planted edge)
    d.goto("/app/")
    assert _step(d, "train").get_attribute("data-done") == "true"
    _click_step(d, "deploy")
    assert f"{version} is in production" in d.messages()
    assert d.page.locator("[data-production]").inner_text().count(version) == 1

    # 5. live decisions of that version: the panel (htmx, every 5 s) marks the step done and the
    # ticker (WebSocket) shows them as they come
    d.page.locator("[data-feed-state]", has_text="live").wait_for(timeout=30_000)
    ticker_row = d.page.locator("[data-feed] tr[data-decision]", has_text=version).first
    ticker_row.wait_for(timeout=90_000)
    d.page.locator("[data-checklist]").wait_for(state="detached", timeout=30_000)  # all five done
    assert "BTC-USD 1d" in ticker_row.inner_text()

    # the decision's page shows the model's vote
    ticker_row.locator("a").click()
    d.page.wait_for_load_state("networkidle")
    assert d.path.startswith("/app/decisions/") and version in d.page.locator("main").inner_text()
    print(f"sign-up to a live decision of the newcomer's own model: {time.monotonic() - started:.0f} s")
