"""The Decisions area's further pages: agent weights over time (server-drawn chart, hit rates),
positions and P&L from the paper ledger, and the flow editor (versions, create from JSON with
inline errors, activate, plan gating). Viewers read, admins change, other tenants see nothing."""

import datetime as dt
import html
import json
import re

import pytest
from django_tenants.utils import schema_context

from compliance.models import AuditRecord
from intelligence import services
from intelligence.consensus import ConsensusEngine
from intelligence.ledger import LedgerConfig, ledger_apply
from intelligence.models import Decision, EngineState, Flow, WeightSnapshot
from tests.dashboard.support import dashboard_client

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _flows(fx) -> list[tuple[str, bool]]:
    with schema_context(fx.tenant.schema_name):
        return [(f.ref, f.active) for f in Flow.objects.order_by("name", "-version")]


def _textarea(page: str) -> dict:
    raw = re.search(r'<textarea name="config"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    return json.loads(html.unescape(raw))


# --- navigation ------------------------------------------------------------------------------------


def test_menu_links_to_the_new_pages(alpha):
    page = dashboard_client(alpha, "viewer").get("/app/").content.decode()
    for url in ("/app/decisions/weights/", "/app/positions/", "/app/flows/"):
        assert f'href="{url}"' in page
    page = dashboard_client(alpha, "viewer").get("/app/flows/").content.decode()
    assert re.search(r'href="/app/flows/"[^>]*aria-current="page"', page)


# --- agent weights ---------------------------------------------------------------------------------


def test_weights_page_empty_state_says_what_to_do(alpha):
    r = dashboard_client(alpha, "viewer").get("/app/decisions/weights/")
    page = r.content.decode()
    assert r.status_code == 200 and 'data-empty="weights"' in page
    main = page.split("<main")[1].split("</main>")[0]  # (the header's bell is an icon of its own)
    assert "start the live stream" in main and "POST /api/v1/decisions/" in main and "<svg" not in main


def test_weights_page_charts_each_agent_and_shows_hit_rates(alpha, beta):
    # Given weight snapshots for two instruments and an engine that has learned on BTC
    with schema_context(alpha.tenant.schema_name):
        for i, (symbol, w) in enumerate([("BTC", 0.5), ("BTC", 0.6), ("BTC", 0.7), ("ETH", 0.4)]):
            s = WeightSnapshot.objects.create(
                flow="default", symbol=symbol, weights={"technical": w, "trend": 1 - w}, accuracy=0.55
            )
            WeightSnapshot.objects.filter(pk=s.pk).update(at=T0 + dt.timedelta(hours=i))
        engine = ConsensusEngine()
        engine._hits = {"BTC": {"technical": [3.0, 4.0]}}
        EngineState.objects.create(flow="default", state=engine.to_json())
    services._pipelines.pop(alpha.tenant.schema_name, None)
    viewer = dashboard_client(alpha, "viewer")
    # When a viewer opens the page (the first instrument by default)
    page = viewer.get("/app/decisions/weights/").content.decode()
    # Then a chart drawn on the server, one line per agent, a selector, and the hit rates
    main = page.split("<main")[1].split("</main>")[0]
    assert 'data-weights-chart="BTC"' in page and "<svg" in page and "<script" not in main
    assert 'data-agent-line="technical"' in page and 'data-agent-line="trend"' in page
    points = re.search(r'data-agent-line="technical"[^>]*points="([^"]+)"', page).group(1).split()
    assert len(points) == 3 and float(points[0].split(",")[1]) > float(points[-1].split(",")[1])  # rising
    assert '<option value="ETH"' in page and "55.0 %" in page  # consensus accuracy
    rates = page.split("data-agent-rates")[1]
    assert 'data-agent="technical"' in rates and "75.0 %" in rates and "no outcomes yet" in rates
    # another instrument
    eth = viewer.get("/app/decisions/weights/?symbol=eth").content.decode()
    assert 'data-weights-chart="ETH"' in eth
    # an unknown one falls back to the first
    assert 'data-weights-chart="BTC"' in viewer.get("/app/decisions/weights/?symbol=NOPE").content.decode()
    # another tenant sees none of it
    other = dashboard_client(beta, "owner").get("/app/decisions/weights/?symbol=BTC").content.decode()
    assert 'data-empty="weights"' in other and "BTC" not in other


# --- positions and P&L -----------------------------------------------------------------------------


def _trade(fx):
    """A BUY of 10% of 100,000 at 100 (100 units, fee 10), then a HOLD marking it at 110."""
    cfg = LedgerConfig()
    with schema_context(fx.tenant.schema_name):
        made = []
        for action, size, minutes in (("BUY", 0.1, 0), ("HOLD", 0.0, 1)):
            made.append(
                Decision.objects.create(
                    source="api",
                    symbol="PNL",
                    timeframe="1d",
                    ts=T0 + dt.timedelta(days=minutes),
                    action=action,
                    confidence=0.7,
                    size=size,
                )
            )
        ledger_apply([(made[0], 100.0)], cfg)
        ledger_apply([(made[1], 110.0)], cfg)
    return made


def test_positions_page_empty_state(alpha):
    page = dashboard_client(alpha, "viewer").get("/app/positions/").content.decode()
    assert 'data-empty="positions"' in page and 'data-empty="fills"' in page and "POST /api/v1/decisions/" in page


def test_positions_page_shows_pnl_exposure_fills_and_totals(alpha, beta):
    buy, _ = _trade(alpha)
    r = dashboard_client(alpha, "viewer").get("/app/positions/")
    page = r.content.decode()
    assert r.status_code == 200
    row = page.split('data-position="PNL"')[1].split("</tr>")[0]
    # qty 100 @ 100, marked at 110: unrealised 1,000; realised -10 (the fee); total 990; exposure 11 %
    for value in ("100.0000", "110.0000", "-10.00", "1000.00", "990.00", "11.0 %", "long"):
        assert value in row, value
    totals = page.split("data-totals")[1].split("</section>")[0]
    assert 'data-total="pnl">990.00' in totals and 'data-total="fees">10.00' in totals
    assert 'data-total="open">1' in totals
    fills = page.split("data-fills")[1]
    assert f'href="/app/decisions/{buy.id}/"' in fills and "10000.00" in fills  # notional
    # another tenant sees none of it
    other = dashboard_client(beta, "owner").get("/app/positions/").content.decode()
    assert 'data-empty="positions"' in other and "PNL" not in other


# --- flow editor -----------------------------------------------------------------------------------


def test_viewers_read_flows_but_cannot_create_or_activate(alpha):
    viewer = dashboard_client(alpha, "viewer")
    page = viewer.get("/app/flows/").content.decode()
    assert 'data-empty="flows"' in page and "data-agents" in page and 'data-form="flow"' not in page
    body = {"name": "tight", "config": "{}", "activate": "on"}
    for role in ("viewer", "analyst"):
        r = dashboard_client(alpha, role).post("/app/flows/", body)
        assert r.status_code == 403 and "data-forbidden" in r.content.decode()
    assert _flows(alpha) == []
    with schema_context(alpha.tenant.schema_name):
        Flow.objects.create(name="tight", version=1, config={})
    for role in ("viewer", "analyst"):
        assert dashboard_client(alpha, role).post("/app/flows/tight/v/1/activate/").status_code == 403
    assert _flows(alpha) == [("tight@1", False)]


def test_flow_editor_creates_a_version_and_shows_errors_inline(alpha):
    admin = dashboard_client(alpha, "admin")
    page = admin.get("/app/flows/").content.decode()
    # the editor starts from the default preset (no flow stored yet)
    assert 'data-form="flow"' in page and _textarea(page)["min_confidence"] == 0.55
    assert _textarea(admin.get("/app/flows/?from=conservative").content.decode())["min_confidence"] == 0.75
    # invalid JSON, a JSON array, a flow out of range, an unknown agent: shown inline, nothing written
    cases = [
        ("{nope", "invalid_json", "", "Not valid JSON"),
        ("[1, 2]", "invalid_json", "", "must be a JSON object"),
        ('{"min_confidence": 7}', "invalid_flow", "min_confidence", "must be a number in [0.5, 1]"),
        ('{"conservative": {"oops": 1}}', "invalid_flow", "conservative.oops", "unknown key"),
        ('{"agents": ["technical", "oracle"]}', "unknown_agent", "agents[1]", "Unknown agent"),
        ('{"settings": {"technical": {"nope": 1}}}', "invalid_agent_settings", "settings.technical.nope", "no setting"),
    ]
    for config, code, path, message in cases:
        r = admin.post("/app/flows/", {"name": "tight", "config": config, "activate": "on"})
        page = html.unescape(r.content.decode())
        assert r.status_code == 400, (config, r.status_code)
        assert f'data-flow-error="{code}"' in page and f'data-error-path="{path}"' in page, config
        assert message in page and 'data-field-errors="config"' in page, config
        assert config in page  # the text is kept to fix
    assert _flows(alpha) == []
    # a valid flow is stored, active, and shown
    r = admin.post("/app/flows/", {"name": "tight", "config": '{"min_confidence": 0.7}', "activate": "on"})
    assert r.status_code == 302 and r["Location"] == "/app/flows/tight/v/1/"
    assert _flows(alpha) == [("tight@1", True)]
    detail = html.unescape(admin.get(r["Location"]).content.decode())
    assert "data-active" in detail and '"min_confidence": 0.7' in detail.split("data-config")[1]
    # the next version starts from the active flow, and may be stored inactive
    assert _textarea(admin.get("/app/flows/").content.decode()) == {"min_confidence": 0.7}
    r = admin.post("/app/flows/", {"name": "tight", "config": '{"min_confidence": 0.6}'})
    assert r.status_code == 302 and _flows(alpha) == [("tight@2", False), ("tight@1", True)]
    listing = admin.get("/app/flows/").content.decode()
    assert 'data-activate="tight@2"' in listing and 'data-activate="tight@1"' not in listing
    assert _textarea(admin.get("/app/flows/?from=tight@2").content.decode()) == {"min_confidence": 0.6}


def test_activating_an_older_version_switches_the_active_flow(alpha, beta):
    admin = dashboard_client(alpha, "admin")
    for config in ('{"min_confidence": 0.7}', '{"min_confidence": 0.6}'):
        admin.post("/app/flows/", {"name": "tight", "config": config, "activate": "on"})
    assert _flows(alpha) == [("tight@2", True), ("tight@1", False)]
    r = admin.post("/app/flows/tight/v/1/activate/")
    assert r.status_code == 302 and r["Location"] == "/app/flows/"
    assert _flows(alpha) == [("tight@2", False), ("tight@1", True)]
    assert "tight@1 is now the active flow" in admin.get("/app/flows/").content.decode()
    with schema_context(alpha.tenant.schema_name):
        assert services.pipeline_load(alpha.tenant).flow_ref == "tight@1"
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.filter(action="flow.activated").count() == 1
    # unknown versions and another tenant's flows are 404, and change nothing
    assert admin.get("/app/flows/tight/v/9/").status_code == 404
    assert admin.post("/app/flows/tight/v/9/activate/").status_code == 404
    other = dashboard_client(beta, "owner")
    assert other.get("/app/flows/tight/v/1/").status_code == 404
    assert other.post("/app/flows/tight/v/2/activate/").status_code == 404
    assert "tight" not in other.get("/app/flows/").content.decode()
    assert _flows(alpha) == [("tight@2", False), ("tight@1", True)] and _flows(beta) == []


def test_plan_gating_is_shown_and_enforced(beta):
    admin = dashboard_client(beta, "admin")  # beta is on the free plan
    page = admin.get("/app/flows/").content.decode()
    agents = page.split("data-agents")[1]
    assert re.search(r'data-agent="technical" data-allowed="yes"', agents)
    assert re.search(r'data-agent="ml" data-allowed="no"', agents) and 'data-needs-plan="pro"' in agents
    assert "needs Pro+" in agents
    # the prefilled preset names only the plan's agents, and is stored as it is
    preset = _textarea(page)
    assert preset["agents"] == ["technical", "trend", "risk"]
    # a flow naming an agent outside the plan: refused with its code and path, nothing written
    r = admin.post("/app/flows/", {"name": "fancy", "config": '{"agents": ["technical", "ml"]}', "activate": "on"})
    body = html.unescape(r.content.decode())
    assert r.status_code == 403 and 'data-flow-error="agent_not_in_plan"' in body
    assert 'data-error-path="agents[1]"' in body and "upgrade the plan" in body
    assert _flows(beta) == []
    r = admin.post("/app/flows/", {"name": "basic", "config": json.dumps(preset), "activate": "on"})
    assert r.status_code == 302 and _flows(beta) == [("basic@1", True)]
    # a version stored before a downgrade shows what it lacks, and can't be activated
    with schema_context(beta.tenant.schema_name):
        Flow.objects.create(name="old", version=1, config={"agents": ["technical", "ml"]})
    detail = admin.get("/app/flows/old/v/1/").content.decode()
    assert re.search(r'data-agent="ml"><span class="mono">ml</span> <span class="badge badge-bad">needs Pro\+', detail)
    r = admin.post("/app/flows/old/v/1/activate/")
    assert r.status_code == 403 and 'data-flow-error="agent_not_in_plan"' in r.content.decode()
    assert _flows(beta) == [("basic@1", True), ("old@1", False)]


def test_weights_page_shows_the_reliability_of_the_stated_confidence(alpha):
    from intelligence.agents import Vote

    # Given an engine that has decided and learned from 200 outcomes
    engine = ConsensusEngine()
    rng = __import__("random").Random(4)
    for _ in range(200):
        action = rng.choice(["BUY", "SELL"])
        votes = {"technical": Vote(action, 0.8, "t"), "trend": Vote(action, 0.6, "t")}
        result = engine.decide(votes, symbol="BTC")
        engine.record_outcome("BTC", votes, result, rng.choice([1, -1]))
    with schema_context(alpha.tenant.schema_name):
        EngineState.objects.create(flow="default", state=engine.to_json())
        WeightSnapshot.objects.create(flow="default", symbol="BTC", weights=engine.weights("BTC"), accuracy=0.5)
    services._pipelines.pop(alpha.tenant.schema_name, None)
    page = dashboard_client(alpha, "viewer").get("/app/decisions/weights/").content.decode()
    # Then the curve: a dot per band with outcomes, and the table of stated against observed
    card = page.split("data-reliability")[1]
    table = engine.calibration_table()
    used = [r for r in table if r["observed"] is not None]
    assert used and card.count("<circle data-bin=") == len(used)
    assert 190 < sum(r["outcomes"] for r in table) <= 200  # older evidence fades (halflife)
    assert f"{used[0]['observed']:.3f}" in card
