"""The configuration service over REST: typed and validated settings per environment (dev,
staging, prod), versions with diff and rollback, promotion dev -> staging -> prod, optimistic
concurrency, the flow each environment runs; bad input writes nothing, roles are enforced, and
another tenant never sees or changes anything."""

import pytest
from django_tenants.utils import schema_context

from compliance.models import AuditRecord
from configuration.models import ConfigVersion
from intelligence.models import Flow
from tests.conftest import error_code

pytestmark = pytest.mark.django_db
CONFIG = "/api/v1/config/"


def _versions(fx, env: str | None = None) -> int:
    with schema_context(fx.tenant.schema_name):
        qs = ConfigVersion.objects.all()
        return (qs.filter(environment=env) if env else qs).count()


def _patch(fx, env: str, values: dict, role: str = "admin", **extra):
    return fx.client(role=role).patch(f"{CONFIG}{env}/", {"values": values, **extra}, format="json")


def test_every_environment_starts_at_the_defaults_and_the_schema_describes_each_setting(alpha):
    viewer = alpha.client(role="viewer")
    r = viewer.get(CONFIG)
    assert r.status_code == 200
    assert [(c["environment"], c["version"]) for c in r.json()] == [("dev", 0), ("staging", 0), ("prod", 0)]
    assert r.json()[2]["values"]["controls"]["max_position"] is None
    assert r.json()[2]["values"]["feed"]["publish"] is True
    doc = viewer.get(CONFIG + "schema/").json()
    paths = {s["path"]: s for s in doc["settings"]}
    assert (
        paths["controls.price_collar_pct"]["type"] == "number" and paths["controls.price_collar_pct"]["maximum"] == 100
    )
    assert paths["controls.max_decisions_per_second"]["type"] == "integer"
    assert doc["promotion"] == ["dev -> staging", "staging -> prod"] and doc["live"] == "prod"


def test_a_change_is_a_new_version_with_its_diff_and_is_audited(alpha):
    r = _patch(alpha, "dev", {"controls": {"max_position": 5, "price_collar_pct": 2.5}}, comment="tighter")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["version"] == 1 and body["values"]["controls"]["max_position"] == 5.0
    assert body["changes"] == [
        {"path": "controls.max_position", "from": None, "to": 5.0},
        {"path": "controls.price_collar_pct", "from": None, "to": 2.5},
    ]
    # a PATCH keeps what it does not name; a PUT resets it to the default
    r = _patch(alpha, "dev", {"decisions": {"min_confidence": 0.6}})
    assert r.json()["version"] == 2 and r.json()["values"]["controls"]["max_position"] == 5.0
    r = alpha.client(role="admin").put(f"{CONFIG}dev/", {"values": {"feed": {"publish": False}}}, format="json")
    assert r.status_code == 200 and r.json()["version"] == 3
    assert r.json()["values"]["controls"]["max_position"] is None and r.json()["values"]["feed"]["publish"] is False
    # the same values again change nothing and store nothing
    r = alpha.client(role="admin").put(f"{CONFIG}dev/", {"values": {"feed": {"publish": False}}}, format="json")
    assert r.status_code == 200 and r.json()["version"] == 3 and r.json()["changes"] == []
    assert _versions(alpha, "dev") == 3 and _versions(alpha, "prod") == 0
    with schema_context(alpha.tenant.schema_name):
        audit = AuditRecord.objects.filter(action="config.changed").order_by("id")
        assert audit.count() == 3
        assert audit[0].details["changes"][0]["path"] == "controls.max_position"
    # history and diffs
    viewer = alpha.client(role="viewer")
    versions = viewer.get(f"{CONFIG}dev/versions/").json()["results"]
    assert [v["version"] for v in versions] == [3, 2, 1] and versions[2]["comment"] == "tighter"
    assert viewer.get(f"{CONFIG}dev/versions/2/").json()["values"]["decisions"]["min_confidence"] == 0.6
    d = viewer.get(f"{CONFIG}dev/diff/", {"from": 1, "to": 2}).json()
    assert d["changes"] == [{"path": "decisions.min_confidence", "from": 0.0, "to": 0.6}]
    d = viewer.get(f"{CONFIG}dev/diff/", {"against": "prod"}).json()
    assert d == {"from": "dev@3", "to": "prod@0", "changes": [{"path": "feed.publish", "from": False, "to": True}]}


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"controls": {"max_positon": 5}}, "controls.max_positon"),  # a typo is not silently ignored
        ({"controls": {"max_position": "five"}}, "controls.max_position"),
        ({"controls": {"max_position": -1}}, "controls.max_position"),
        ({"controls": {"price_collar_pct": 150}}, "controls.price_collar_pct"),
        ({"controls": {"max_decisions_per_second": 2.5}}, "controls.max_decisions_per_second"),
        ({"feed": {"publish": 1}}, "feed.publish"),
        ({"controls": 5}, "controls"),
        ({"flow": "nosuch@1"}, "flow"),
    ],
)
def test_bad_settings_are_refused_with_the_path_and_nothing_is_stored(alpha, values, path):
    r = _patch(alpha, "staging", values)
    assert r.status_code == 400 and error_code(r) == "invalid_config", r.content
    assert r.json()["error"]["details"]["path"] == path
    assert _versions(alpha) == 0


def test_unknown_environment_stale_version_and_roles(alpha):
    r = alpha.client(role="viewer").get(f"{CONFIG}qa/")
    assert r.status_code == 404 and error_code(r) == "unknown_environment"
    assert _patch(alpha, "qa", {"feed": {"publish": False}}).status_code == 404
    # optimistic concurrency: a change made against a stale version is refused
    assert _patch(alpha, "prod", {"feed": {"publish": False}}, expected_version=0).status_code == 200
    r = _patch(alpha, "prod", {"feed": {"publish": True}}, expected_version=0)
    assert r.status_code == 409 and error_code(r) == "version_conflict"
    assert r.json()["error"]["details"]["current_version"] == 1
    # viewers and analysts read but do not change
    for role in ("viewer", "analyst"):
        r = _patch(alpha, "prod", {"feed": {"publish": True}}, role=role)
        assert r.status_code == 403 and error_code(r) == "insufficient_role"
        r = alpha.client(role=role).post(f"{CONFIG}prod/rollback/", {"version": 1}, format="json")
        assert r.status_code == 403
    assert _versions(alpha) == 1


def test_promotion_travels_dev_to_staging_to_prod_and_rollback_copies_an_old_version_forward(alpha):
    admin = alpha.client(role="admin")
    r = admin.post(f"{CONFIG}staging/promote/", {}, format="json")
    assert r.status_code == 409 and error_code(r) == "nothing_to_promote"
    r = admin.post(f"{CONFIG}dev/promote/", {}, format="json")
    assert r.status_code == 400 and error_code(r) == "not_promotable"
    _patch(alpha, "dev", {"controls": {"max_order_value": 50_000}})
    r = admin.post(f"{CONFIG}staging/promote/", {"comment": "after the backtest"}, format="json")
    assert r.status_code == 200 and r.json()["based_on"] == "dev@1" and r.json()["source"] == "promote"
    assert r.json()["values"]["controls"]["max_order_value"] == 50_000
    r = admin.post(f"{CONFIG}prod/promote/", {}, format="json")
    assert r.status_code == 200 and r.json()["version"] == 1 and r.json()["based_on"] == "staging@1"
    # a later prod change, then a rollback to prod@1: a new version with prod@1's values
    _patch(alpha, "prod", {"controls": {"max_order_value": 1}})
    r = admin.post(f"{CONFIG}prod/rollback/", {"version": 1, "comment": "too tight"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["version"] == 3 and r.json()["based_on"] == "prod@1" and r.json()["source"] == "rollback"
    assert r.json()["changes"] == [{"path": "controls.max_order_value", "from": 1.0, "to": 50_000.0}]
    r = admin.post(f"{CONFIG}prod/rollback/", {"version": 9}, format="json")
    assert r.status_code == 404 and error_code(r) == "not_found"
    with schema_context(alpha.tenant.schema_name):
        rows = AuditRecord.objects.filter(action__startswith="config.").order_by("id")
        actions = list(rows.values_list("action", flat=True))
    assert actions == ["config.changed", "config.promoted", "config.promoted", "config.changed", "config.rolled_back"]


def test_each_environment_runs_its_own_flow(alpha):
    admin = alpha.client(role="admin")
    assert (
        admin.post("/api/v1/flows/", {"name": "calm", "config": {"min_confidence": 0.7}}, format="json").status_code
        == 201
    )
    r = admin.post(
        "/api/v1/flows/", {"name": "calm", "config": {"min_confidence": 0.6}, "environment": "dev"}, format="json"
    )
    assert r.status_code == 201 and r.json()["environments"] == ["dev"] and not r.json()["active"]
    flows = {f["ref"]: f["environments"] for f in admin.get("/api/v1/flows/").json()}
    assert flows == {"calm@2": ["dev"], "calm@1": ["prod"]}
    # promoting dev to staging carries its flow; activating a version in staging is a staging change
    admin.post(f"{CONFIG}staging/promote/", {}, format="json")
    assert admin.get(f"{CONFIG}staging/").json()["values"]["flow"] == "calm@2"
    r = admin.post("/api/v1/flows/calm/1/activate/", {"environment": "staging"}, format="json")
    assert r.status_code == 200 and sorted(r.json()["environments"]) == ["prod", "staging"]
    with schema_context(alpha.tenant.schema_name):
        assert Flow.objects.get(active=True).version == 1  # prod (the live one) did not move
    # the live environment's flow is the active one
    r = admin.patch(f"{CONFIG}prod/", {"values": {"flow": "calm@2"}}, format="json")
    assert r.status_code == 200
    with schema_context(alpha.tenant.schema_name):
        assert Flow.objects.get(active=True).version == 2
    assert admin.get("/api/v1/ensemble-status/").json()["flow"] == "calm@2"
    # a flow diff, setting by setting
    d = admin.get("/api/v1/flows/calm/2/diff/").json()
    assert d["from"] == "calm@1" and {"path": "min_confidence", "from": 0.7, "to": 0.6} in d["changes"]
    r = admin.get("/api/v1/flows/calm/2/diff/", {"against": "nope@x"})
    assert r.status_code == 400 and error_code(r) == "invalid_flow_ref"


def test_another_tenant_sees_and_changes_nothing(alpha, beta):
    _patch(alpha, "prod", {"controls": {"max_position": 3}})
    # beta's own prod is untouched, and alpha's versions are not beta's
    assert beta.client(role="viewer").get(f"{CONFIG}prod/").json()["version"] == 0
    r = beta.client(role="viewer").get(f"{CONFIG}prod/versions/1/")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = beta.client(role="admin").post(f"{CONFIG}prod/rollback/", {"version": 1}, format="json")
    assert r.status_code == 404
    assert _versions(beta) == 0 and _versions(alpha) == 1
