"""Agent weights over time, the agent catalog with plan gating, and flow versions (read one,
activate one) over REST: bad input gets a code and writes nothing, roles and scopes are enforced,
the plan's agents are enforced, and another tenant never sees or changes anything."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from compliance.models import AuditRecord
from intelligence.models import Flow, WeightSnapshot
from tests.conftest import error_code

pytestmark = pytest.mark.django_db
WEIGHTS = "/api/v1/agent-weights/"
FLOWS = "/api/v1/flows/"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _snapshot(fx, *, symbol: str, minutes: int, flow: str = "default", technical: float = 0.5, accuracy=0.5):
    with schema_context(fx.tenant.schema_name):
        s = WeightSnapshot.objects.create(
            flow=flow, symbol=symbol, weights={"technical": technical, "trend": 1 - technical}, accuracy=accuracy
        )
        WeightSnapshot.objects.filter(pk=s.pk).update(at=T0 + dt.timedelta(minutes=minutes))  # auto_now_add


def _flows(fx) -> list[tuple[str, bool]]:
    return [(f["ref"], f["active"]) for f in fx.client(role="viewer").get(FLOWS).json()]


# --- agent weights ---------------------------------------------------------------------------------


def test_weight_history_is_oldest_first_filtered_and_limited(alpha):
    # Given BTC snapshots stored out of order, one ETH snapshot and one of another flow
    for minutes, w in ((20, 0.6), (0, 0.5), (10, 0.55)):
        _snapshot(alpha, symbol="BTC", minutes=minutes, technical=w)
    _snapshot(alpha, symbol="ETH", minutes=5)
    _snapshot(alpha, symbol="BTC", minutes=30, flow="tight", technical=0.9)
    viewer = alpha.client(role="viewer")
    # When a viewer asks for BTC (the active flow by default: none stored, so "default")
    r = viewer.get(WEIGHTS + "?symbol=btc")
    # Then the history, oldest first, in the documented shape
    assert r.status_code == 200, r.content
    rows = r.json()
    assert [x["weights"]["technical"] for x in rows] == [0.5, 0.55, 0.6]
    assert set(rows[0]) == {"created_at", "flow", "symbol", "weights", "accuracy"}
    assert {x["flow"] for x in rows} == {"default"} and {x["symbol"] for x in rows} == {"BTC"}
    assert rows[0]["created_at"] < rows[1]["created_at"] < rows[2]["created_at"]
    # the most recent N, still oldest first
    assert [x["weights"]["technical"] for x in viewer.get(WEIGHTS + "?symbol=BTC&limit=2").json()] == [0.55, 0.6]
    # every instrument of the flow; another flow by name
    assert len(viewer.get(WEIGHTS).json()) == 4
    assert [x["weights"]["technical"] for x in viewer.get(WEIGHTS + "?symbol=BTC&flow=tight").json()] == [0.9]
    assert viewer.get(WEIGHTS + "?symbol=NOPE").json() == []
    # a read-only key reads it too
    assert alpha.client(scope="read").get(WEIGHTS).status_code == 200


def test_weight_history_follows_the_active_flow(alpha):
    _snapshot(alpha, symbol="BTC", minutes=0)
    _snapshot(alpha, symbol="BTC", minutes=1, flow="tight", technical=0.8)
    r = alpha.client(role="admin").post(FLOWS, {"name": "tight", "config": {}}, format="json")
    assert r.status_code == 201
    rows = alpha.client().get(WEIGHTS + "?symbol=BTC").json()
    assert [(x["flow"], x["weights"]["technical"]) for x in rows] == [("tight", 0.8)]


def test_weight_history_query_count_does_not_grow_with_rows(alpha):
    _snapshot(alpha, symbol="BTC", minutes=0)
    c = alpha.client()
    c.get(WEIGHTS)  # warm the key and tenant caches
    with CaptureQueriesContext(connection) as one:
        assert len(c.get(WEIGHTS).json()) == 1
    for m in range(1, 30):
        _snapshot(alpha, symbol="BTC", minutes=m)
    with CaptureQueriesContext(connection) as many:
        assert len(c.get(WEIGHTS).json()) == 30
    assert len(many) == len(one)


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=5001", "limit=abc", "flow=not%20a%20slug", "symbol=" + "X" * 33], ids=str
)
def test_weight_history_bad_parameters_are_400_with_a_code(alpha, query):
    r = alpha.client().get(f"{WEIGHTS}?{query}")
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    assert set(r.json()["error"]["details"]) & {"limit", "flow", "symbol"}


def test_weight_history_of_another_tenant_is_never_shown(alpha, beta):
    _snapshot(alpha, symbol="ALPHAONLY", minutes=0)
    assert beta.client().get(WEIGHTS).json() == []
    assert beta.client().get(WEIGHTS + "?symbol=ALPHAONLY").json() == []
    # alpha's key on beta's host: 404, nothing of alpha's
    r = alpha.client().get(WEIGHTS, HTTP_HOST="beta.localhost")
    assert r.status_code == 404 and "ALPHAONLY" not in r.content.decode()


# --- the agent catalog -----------------------------------------------------------------------------


def test_agent_catalog_says_which_plan_has_each_agent(alpha, beta):
    pro = {a["name"]: a for a in alpha.client(role="viewer").get("/api/v1/agents/").json()}
    assert pro["ml"]["allowed"] and pro["ml"]["needs_plan"] is None and pro["technical"]["tier"] == "basic"
    free = {a["name"]: a for a in beta.client(scope="read").get("/api/v1/agents/").json()}
    assert {n for n, a in free.items() if a["allowed"]} == {"technical", "trend", "risk"}
    assert free["ml"]["needs_plan"] == {"code": "pro", "name": "Pro"}
    assert set(free) == set(pro)
    # presets only name what the plan includes, so a preset can always be stored as it is
    presets = beta.client().get(FLOWS + "presets/").json()
    assert presets["default"]["agents"] == ["technical", "trend", "risk"]
    r = beta.client(role="admin").post(FLOWS, {"name": "preset", "config": presets["conservative"]}, format="json")
    assert r.status_code == 201, r.content


# --- flow versions: read one, activate one ----------------------------------------------------------


@pytest.fixture
def two_versions(alpha):
    admin = alpha.client(role="admin")
    one = admin.post(FLOWS, {"name": "tight", "config": {"min_confidence": 0.7}}, format="json")
    two = admin.post(FLOWS, {"name": "tight", "config": {"min_confidence": 0.6}}, format="json")
    assert one.status_code == two.status_code == 201
    assert _flows(alpha) == [("tight@2", True), ("tight@1", False)]


def test_flow_version_detail(alpha, two_versions):
    r = alpha.client(role="viewer").get(FLOWS + "tight/1/")
    assert r.status_code == 200 and r.json()["config"] == {"min_confidence": 0.7} and not r.json()["active"]
    r = alpha.client(role="viewer").get(FLOWS + "tight/9/")
    assert r.status_code == 404 and error_code(r) == "not_found" and "tight" not in r.content.decode()


def test_activating_an_older_version_switches_the_active_flow(alpha, two_versions):
    admin = alpha.client(role="admin")
    assert admin.get("/api/v1/ensemble-status/").json()["flow"] == "tight@2"
    # When an admin activates version 1
    r = admin.post(FLOWS + "tight/1/activate/")
    # Then it is the one active flow, decisions use it at once, and the switch is audited
    assert r.status_code == 200, r.content
    assert r.json()["ref"] == "tight@1" and r.json()["active"]
    assert _flows(alpha) == [("tight@2", False), ("tight@1", True)]
    assert admin.get("/api/v1/ensemble-status/").json()["flow"] == "tight@1"
    with schema_context(alpha.tenant.schema_name):
        audit = AuditRecord.objects.filter(action="flow.activated").get()
        assert audit.details == {"ref": "tight@1", "previous": "tight@2", "environment": "prod"}
    # activating the active version again changes and records nothing
    assert alpha.client().post(FLOWS + "tight/1/activate/").status_code == 200
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.filter(action="flow.activated").count() == 1
    # an admin-scope key may switch back
    assert alpha.client(scope="admin").post(FLOWS + "tight/2/activate/").json()["active"]
    assert _flows(alpha) == [("tight@2", True), ("tight@1", False)]


def test_activate_needs_the_manage_role_or_admin_scope(alpha, two_versions):
    for client, code in (
        (alpha.client(role="viewer"), "insufficient_role"),
        (alpha.client(role="analyst"), "insufficient_role"),
        (alpha.client(scope="read"), "insufficient_scope"),
        (alpha.client(scope="trade"), "insufficient_scope"),
    ):
        r = client.post(FLOWS + "tight/1/activate/")
        assert r.status_code == 403 and error_code(r) == code
    assert _flows(alpha) == [("tight@2", True), ("tight@1", False)]
    with schema_context(alpha.tenant.schema_name):
        assert not AuditRecord.objects.filter(action="flow.activated").exists()


def test_activate_unknown_version_or_another_tenants_flow_is_404(alpha, beta, two_versions):
    r = alpha.client(role="admin").post(FLOWS + "tight/7/activate/")
    assert r.status_code == 404 and error_code(r) == "not_found" and "tight" not in r.content.decode()
    assert alpha.client(role="admin").post(FLOWS + "nothing-here/1/activate/").status_code == 404
    # beta's owner names alpha's flow: 404, and alpha's active flow is unchanged
    for path in ("tight/1/activate/",):
        r = beta.client(role="owner").post(FLOWS + path)
        assert r.status_code == 404 and "tight" not in r.content.decode()
    assert beta.client(role="owner").get(FLOWS + "tight/1/").status_code == 404
    assert _flows(alpha) == [("tight@2", True), ("tight@1", False)]
    assert _flows(beta) == []


# --- plan gating -----------------------------------------------------------------------------------


def test_a_flow_naming_an_agent_outside_the_plan_is_refused(alpha, beta):
    admin = beta.client(role="admin")  # beta is on the free plan: technical, trend, risk
    config = {"agents": ["technical", "ml", "trend", "pattern"]}
    r = admin.post(FLOWS, {"name": "fancy", "config": config}, format="json")
    assert r.status_code == 403 and error_code(r) == "agent_not_in_plan"
    details = r.json()["error"]["details"]
    assert details["path"] == "agents[1]" and details["agents"] == ["ml", "pattern"] and details["plan"] == "free"
    assert _flows(beta) == []  # nothing written
    with schema_context(beta.tenant.schema_name):
        assert not AuditRecord.objects.filter(action__startswith="flow.").exists()
    # an unknown agent is a mistake first, whatever the plan
    r = admin.post(FLOWS, {"name": "fancy", "config": {"agents": ["oracle"]}}, format="json")
    assert r.status_code == 400 and error_code(r) == "unknown_agent"
    # the plan's agents, or none named (the default flow's agents the plan includes), are fine
    r = admin.post(FLOWS, {"name": "basic", "config": {"agents": ["technical", "trend", "risk"]}}, format="json")
    assert r.status_code == 201
    assert admin.post(FLOWS, {"name": "plain", "config": {}}, format="json").status_code == 201
    assert set(admin.get("/api/v1/ensemble-status/").json()["agents"]) == {"technical", "trend", "risk"}
    # the pro plan includes them
    assert alpha.client(role="admin").post(FLOWS, {"name": "fancy", "config": config}, format="json").status_code == 201


def test_activating_a_version_outside_the_plan_is_refused(beta):
    # Given a version stored before a downgrade (written directly: the API would refuse it now)
    with schema_context(beta.tenant.schema_name):
        Flow.objects.create(name="old", version=1, config={"agents": ["technical", "ml"]})
    admin = beta.client(role="admin")
    assert admin.post(FLOWS, {"name": "basic", "config": {"agents": ["technical"]}}, format="json").status_code == 201
    r = admin.post(FLOWS + "old/1/activate/")
    assert r.status_code == 403 and error_code(r) == "agent_not_in_plan"
    assert _flows(beta) == [("basic@1", True), ("old@1", False)]
