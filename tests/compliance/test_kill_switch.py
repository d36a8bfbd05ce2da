"""Kill switches (RTS 6 Art. 12): a tenant's admins halt its trading, staff halt the platform;
no decision is made (REST or live stream) in any process while engaged; only staff lift it;
the stream loses no bar and decides none twice across a halt."""

import json
import os
import subprocess
import sys
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django_tenants.utils import schema_context

from compliance import controls
from compliance.models import AuditRecord
from eventbus import bus
from intelligence.models import Decision
from intelligence.stream import TenantStream
from marketdata import services as md_services
from marketdata.synthetic import as_csv, generate_bars
from marketdata.validation import read_table
from tests.conftest import error_code, service_env
from tests.intelligence.helpers import clear_streams, live_market

pytestmark = pytest.mark.django_db
KILL = "/api/v1/kill-switch/"
PLATFORM = "/api/v1/platform/kill-switch/"


@pytest.fixture
def staff_client(client):
    staff = get_user_model().objects.create_user(email="desk@platform.test", password="x" * 12, is_staff=True)
    client.force_login(staff)
    return client


@pytest.fixture
def bars(alpha, beta):
    for fx in (alpha, beta):
        with schema_context(fx.tenant.schema_name):
            raw = read_table(as_csv(generate_bars(300, seed=9)), "csv")
            md_services.bars_import(tenant=fx.tenant, symbol="KIL", timeframe="1d", raw=raw)


def _decide(fx):
    return fx.client(scope="trade").post("/api/v1/decisions/", {"symbol": "KIL"}, format="json")


def test_an_admin_halts_the_tenant_and_only_staff_lift_it(alpha, beta, bars, staff_client, usage_redis,
                                                            django_capture_on_commit_callbacks):  # fmt: skip
    assert _decide(alpha).status_code == 201
    assert alpha.client(role="viewer").post(KILL, {"reason": "x"}, format="json").status_code == 403
    r = alpha.client(role="admin").post(KILL, {"reason": ""}, format="json")
    assert r.status_code == 400  # a reason is required; nothing engaged
    with django_capture_on_commit_callbacks(execute=True):
        r = alpha.client(role="admin").post(KILL, {"reason": "runaway model"}, format="json")
    assert r.status_code == 201 and r.json()["halted"] and r.json()["tenant"]["reason"] == "runaway model"
    r = _decide(alpha)
    assert (
        r.status_code == 423
        and error_code(r) == "kill_switch_active"
        and "runaway model" in r.json()["error"]["message"]
    )
    assert _decide(beta).status_code == 201  # another tenant trades on
    # the tenant cannot lift its own switch, whoever asks: no tenant route lifts; the staff one refuses them
    for who in ("owner", "admin"):
        assert alpha.client(role=who).delete(KILL).status_code == 405
        r = alpha.client(role=who).post(PLATFORM, {"action": "lift"}, format="json")
        assert r.status_code == 403
    assert alpha.client().post(PLATFORM, {"action": "lift", "tenant": alpha.slug}, format="json").status_code == 403
    assert _decide(alpha).status_code == 423
    with django_capture_on_commit_callbacks(execute=True):
        r = staff_client.post(PLATFORM, {"action": "lift", "tenant": alpha.slug}, content_type="application/json")
    assert r.status_code == 200 and r.json() == {"lifted": True}
    assert _decide(alpha).status_code == 201 and alpha.client().get(KILL).json()["halted"] is False
    with schema_context(alpha.tenant.schema_name):
        actions = list(AuditRecord.objects.filter(action__startswith="kill_switch").values_list("action", flat=True))
        assert sorted(actions) == ["kill_switch.engaged", "kill_switch.lifted"]


def test_staff_halt_the_platform_tenants_cannot(alpha, beta, bars, staff_client, usage_redis,
                                               django_capture_on_commit_callbacks):  # fmt: skip
    assert (
        alpha.client(role="owner").post(PLATFORM, {"action": "engage", "reason": "x"}, format="json").status_code == 403
    )
    with django_capture_on_commit_callbacks(execute=True):
        r = staff_client.post(PLATFORM, {"action": "engage", "reason": "market halt"}, content_type="application/json")
    assert r.status_code == 200
    assert _decide(alpha).status_code == 423 and _decide(beta).status_code == 423
    assert beta.client().get(KILL).json()["platform"]["reason"] == "market halt"
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(PLATFORM, {"action": "lift"}, content_type="application/json")
    assert _decide(beta).status_code == 201


def test_every_process_sees_it_and_the_mirror_rebuilds_from_the_database(alpha, django_capture_on_commit_callbacks):
    schema = alpha.tenant.schema_name
    code = (
        "import django, json; django.setup()\n"
        "from compliance import controls\n"
        f"print(json.dumps(controls.kill_state({schema!r})))\n"
    )
    env = {**os.environ, **service_env(), "DJANGO_SETTINGS_MODULE": "config.settings"}

    def elsewhere():
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert elsewhere() is None
    with django_capture_on_commit_callbacks(execute=True):
        controls.kill_engage(tenant=alpha.tenant, reason="drill", actor="t")
    assert elsewhere()["reason"] == "drill"
    # Redis lost the mirror (a restart): rebuilt from the database on the next read, still halted
    from tenants.resolution import redis_client

    redis_client().delete(*redis_client().keys("kill:*"))
    controls.reset_local()
    assert controls.kill_state(schema)["reason"] == "drill" and redis_client().exists("kill:loaded")


def test_the_stream_halts_mid_batch_and_resumes_without_losing_or_repeating_a_bar(alpha):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    live = live_market(alpha.tenant, "HLT", seed=81, live=40)
    bus.publish_many("market.data.update", live, schema=schema)
    stream = TenantStream(alpha.tenant, batch=20)
    stream.start()
    real = controls.kill_state
    calls = {"n": 0}

    def engaged_after_five(s):  # the switch engages while the first batch is being decided
        calls["n"] += 1
        return {"scope": "tenant", "reason": "test", "since": "now"} if calls["n"] > 6 else real(s)

    with mock.patch("intelligence.stream.publish_decisions"):
        with mock.patch.object(controls, "kill_state", engaged_after_five):
            assert stream.run_once(block_ms=10) == 0 and stream.halted
            assert stream.run_once(block_ms=10) == 0  # halted: reads nothing
        with schema_context(schema):
            assert not Decision.objects.filter(source="stream").exists()  # nothing of the batch was kept
        while stream.run_once(block_ms=10):
            pass
    with schema_context(schema):
        decided = [int(d.ts.timestamp()) for d in Decision.objects.filter(source="stream").order_by("ts")]
    assert decided == [b["ts"] for b in live] and not stream.halted
    clear_streams(schema)


def test_the_dashboard_shows_the_halt_and_admins_engage_it(alpha, django_capture_on_commit_callbacks):
    from tests.dashboard.support import dashboard_client

    viewer = dashboard_client(alpha, "viewer")
    page = viewer.get("/app/kill-switch/").content.decode()
    assert "data-kill-switch" not in page and "Admins and owners can halt trading" in page
    assert viewer.post("/app/kill-switch/", {"reason": "x"}).status_code == 403
    admin = dashboard_client(alpha, "admin")
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.post("/app/kill-switch/", {"reason": "fat finger"}).status_code == 302
    page = viewer.get("/app/decisions/").content.decode()  # every page carries the banner
    assert "data-kill-switch" in page and "fat finger" in page and "until platform staff lift it" in page
    assert "data-engaged" in admin.get("/app/kill-switch/").content.decode()


def test_staff_engage_and_lift_from_django_admin(alpha, django_capture_on_commit_callbacks):
    from django.test import Client

    from tenants.models import KillSwitch

    staff = get_user_model().objects.create_superuser(email="root@platform.test", password="x" * 12)
    c = Client()
    c.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post("/admin/tenants/killswitch/add/", {"tenant": alpha.tenant.pk, "reason": "compliance review"})
    assert r.status_code == 302 and controls.kill_state(alpha.tenant.schema_name)["reason"] == "compliance review"
    switch = KillSwitch.objects.get(tenant=alpha.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        c.post("/admin/tenants/killswitch/", {"action": "lift", "_selected_action": [switch.pk]})
    assert controls.kill_state(alpha.tenant.schema_name) is None
    assert KillSwitch.objects.get(pk=switch.pk).lifted_by == "root@platform.test"
