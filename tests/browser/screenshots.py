"""`make screenshots`: a PNG of each main page at desktop and phone width, for review.

Runs the real server on the development database (after `make demo`), logs in as the demo owner
from .data/demo.json and writes .data/screenshots/<page>-<width>.png (not committed).
"""

from __future__ import annotations

import json
import sys

from .support import DESKTOP, PHONE, ROOT, Dashboard, WebServer, browser_launch, chromium_missing_reason

PUBLIC_PAGES = {
    "login": "/accounts/login/",
    "signup": "/accounts/signup/",
    "password-reset": "/accounts/password-reset/",
}
PAGES = {
    "overview": "/app/",
    "api-keys": "/app/api-keys/",
    "members": "/app/members/",
    "profile": "/accounts/profile/",
    "new-tenant": "/app/tenants/new/",
    "decisions": "/app/decisions/",
    "agent-weights": "/app/decisions/weights/",
    "positions": "/app/positions/",
    "flows": "/app/flows/",
    "models": "/app/models/",
    "model": "/app/models/btc-daily/",
    "model-report": "/app/models/btc-daily/v/1/",
    "data": "/app/data/",
    "features": "/app/features/",
    "backtests": "/app/backtests/",
    "performance": "/app/performance/",
    "config": "/app/config/",
    "kill-switch": "/app/kill-switch/",
    "usage": "/app/usage/",
    "billing": "/app/billing/",
    "notifications": "/app/notifications/",
    "subscriptions": "/app/notifications/subscriptions/",
    "deliveries": "/app/notifications/deliveries/",
    "webhooks": "/app/notifications/webhooks/",
    "telegram": "/app/notifications/telegram/",
    "alerts": "/app/notifications/alerts/",
    "alert-rules": "/app/notifications/alert-rules/",
    "workflows": "/app/workflows/",
}
ADMIN_PAGES = {
    "admin": "/admin/",
    "admin-tenants": "/admin/tenants/tenant/",
    "admin-api-keys": "/admin/tenants/apikey/",
    "staff-health": "/app/staff/health/",
    "staff-tenants": "/app/staff/tenants/",
    "staff-revenue": "/app/staff/revenue/",
}


def main() -> int:
    missing = chromium_missing_reason()
    if missing:
        print(f"screenshots skipped: {missing}", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    demo = json.loads((ROOT / ".data" / "demo.json").read_text())
    out = ROOT / ".data" / "screenshots"
    server = WebServer({}).start()
    total = 2 * (len(PAGES) + len(PUBLIC_PAGES)) + len(ADMIN_PAGES)
    done = 0
    failed: list[str] = []  # pages that did not answer 200 (their PNG shows the error page)
    try:
        with sync_playwright() as p:
            browser = browser_launch(p)
            for viewport in (DESKTOP, PHONE):
                anon = Dashboard(browser.new_context(viewport=viewport).new_page(), server.base_url)
                user = Dashboard(browser.new_context(viewport=viewport).new_page(), server.base_url)
                user.login(demo["email"], demo["password"])
                for who, pages in ((anon, PUBLIC_PAGES), (user, PAGES)):
                    for name, path in pages.items():
                        response = who.goto(path)
                        if response is None or response.status != 200:
                            failed.append(f"{path}: {response.status if response else 'no response'}")
                        target = out / f"{name}-{viewport['width']}.png"
                        who.screenshot(target)
                        done += 1
                        bar = "#" * (20 * done // total)
                        print(f"\r[{bar:<20}] {done}/{total} {target.relative_to(ROOT)}", end="", flush=True)
            staff = Dashboard(browser.new_context(viewport=DESKTOP).new_page(), server.base_url)
            staff.goto("/admin/login/")
            staff.page.fill("#id_username", demo["admin_email"])
            staff.page.fill("#id_password", demo["admin_password"])
            staff.page.locator("input[type=submit]").click()
            for name, path in ADMIN_PAGES.items():
                response = staff.goto(path)
                if response is None or response.status != 200:
                    failed.append(f"{path}: {response.status if response else 'no response'}")
                staff.screenshot(out / f"{name}-1280.png")
                done += 1
                print(f"\r[{'#' * (20 * done // total):<20}] {done}/{total} .data/screenshots/{name}-1280.png", end="")
            browser.close()
    finally:
        server.stop()
    print(f"\n{total} screenshots in {out}")
    if failed:
        print("not 200: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
