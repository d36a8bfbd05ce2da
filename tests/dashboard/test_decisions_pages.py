"""The Decisions pages: recent decisions with a live-feed ticket, a decision's vote breakdown,
and nothing of another tenant's."""

import json

import pytest
from django_tenants.utils import schema_context

from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from tenants import resolution
from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db


def test_feed_page_lists_decisions_and_carries_a_one_use_ticket(alpha, beta, usage_redis):
    with schema_context(alpha.tenant.schema_name):
        raw = read_table(as_csv(generate_bars(300, seed=71)), "csv")
        md_services.bars_import(tenant=alpha.tenant, symbol="PAGE", timeframe="1d", raw=raw)
    d = alpha.client(scope="trade").post("/api/v1/decisions/", {"symbol": "PAGE"}, format="json").json()
    viewer = dashboard_client(alpha, "viewer")
    html = viewer.get("/app/decisions/").content.decode()
    assert f'data-decision="{d["id"]}"' in html and "ws/decisions/" in html
    ticket = html.split('data-ticket="')[1].split('"')[0]
    stored = json.loads(resolution.redis_client().get(f"wsticket:{ticket}"))
    assert stored["tenant_id"] == alpha.tenant.pk
    fresh = viewer.get("/app/decisions/ticket/").json()["ticket"]
    assert fresh != ticket
    detail = viewer.get(f"/app/decisions/{d['id']}/").content.decode()
    assert "data-votes" in detail and "technical" in detail and d["explanation"][:20] in detail
    other = dashboard_client(beta, "owner")
    assert other.get(f"/app/decisions/{d['id']}/").status_code == 404
    assert f'data-decision="{d["id"]}"' not in other.get("/app/decisions/").content.decode()
