"""The Decisions page is live: a decision published for the tenant appears at the top of the
feed without a reload, through the edge server's WebSocket and the page's one-use ticket; another
tenant's decision never does."""

from __future__ import annotations

from tests.conftest import PASSWORD


def test_a_published_decision_appears_on_the_page_without_a_reload(dashboard, feed_edge, committed, unique):
    from intelligence.feed import publish_decisions
    from tenants.services import tenant_provision

    with committed():
        mine, _ = tenant_provision(
            slug=f"live-{unique}", owner_email=f"live-{unique}@firm.test", owner_password=PASSWORD
        )
        other, _ = tenant_provision(
            slug=f"else-{unique}", owner_email=f"else-{unique}@firm.test", owner_password=PASSWORD
        )
    d = dashboard
    d.login(f"live-{unique}@firm.test", PASSWORD)
    d.goto("/app/decisions/")
    assert d.page.locator('[data-empty="decisions"]').is_visible()
    d.page.locator("[data-feed-state]", has_text="live").wait_for()

    decision = {"id": 41, "symbol": "LIVE-USD", "timeframe": "1m", "ts": "2026-11-23T10:15:00Z", "action": "BUY"}
    publish_decisions([{**decision, "id": 7, "symbol": "NOT-MINE"}], other.schema_name)
    publish_decisions([{**decision, "confidence": 0.734, "model_version": "m@3"}], mine.schema_name)
    row = d.page.locator('[data-decision="41"]')
    row.wait_for()
    text = row.inner_text()
    assert "LIVE-USD 1m 2026-11-23 10:15" in text and "BUY" in text and "73.4 %" in text and "m@3" in text
    assert d.page.locator('[data-empty="decisions"]').count() == 0
    assert d.page.locator('[data-decision="7"]').count() == 0 and "NOT-MINE" not in d.page.content()
