"""The Events page (under Decisions): the tenant's own streams with length and consumer groups
(pending, lag), its dead-letter queue, and replay for admins (audited); a viewer can look but not
replay (403, nothing replayed); another tenant sees none of it; an unknown id replays nothing."""

import pytest
from django_tenants.utils import schema_context

from compliance.models import AuditRecord
from eventbus import bus
from tests.dashboard.support import dashboard_client
from tests.intelligence.helpers import clear_streams

pytestmark = pytest.mark.django_db


def _trade(i: int) -> dict:
    return {"order_id": f"D{i}", "symbol": "EVP", "side": "BUY", "qty": 1.0, "requested_qty": 1.0, "price": 1.0,
            "fee": 0.0, "ts": i, "partial": False}  # fmt: skip


@pytest.fixture
def streams(alpha, beta):
    schema = alpha.tenant.schema_name
    clear_streams(schema)
    clear_streams(beta.tenant.schema_name)
    bus.publish_many("trade.executed", [_trade(i) for i in range(3)], schema=schema)
    reader = bus.Consumer("trade.executed", "perf", lambda b: None, schema=schema, batch=2)
    reader.ensure_group()
    reader.run_once(block_ms=10)  # 2 read and acked, 1 left: lag 1

    def broken(entries):
        raise RuntimeError("handler broke")

    bus.publish("position.opened", {"symbol": "EVP", "side": "LONG", "qty": 1.0, "avg_price": 1.0, "ts": 1},
                schema=schema)  # fmt: skip
    dying = bus.Consumer("position.opened", "notify", broken, schema=schema, claim_idle_ms=0, max_deliveries=1)
    dying.ensure_group()
    for _ in range(3):
        dying.run_once(block_ms=10)
    yield schema
    clear_streams(schema)


def test_the_page_lists_the_tenants_streams_groups_and_dead_letters(alpha, beta, streams):
    html = dashboard_client(alpha, "viewer").get("/app/events/").content.decode()
    assert 'data-stream="trade.executed"' in html and 'data-group="perf"' in html
    row = html.split('data-stream="trade.executed"')[1].split("</tr>")[0]
    assert '<td data-label="Length" data-length>3</td>' in row and "lag 1" in row
    (dead,) = bus.dlq_list(schema=streams)
    assert f'data-dlq-id="{dead["dlq_id"]}"' in html and "handler broke" in html
    assert "data-replay" not in html  # a viewer: no replay button
    nav = dashboard_client(alpha, "viewer").get("/app/").content.decode()
    assert 'href="/app/events/"' in nav
    other = dashboard_client(beta, "owner").get("/app/events/").content.decode()
    assert 'data-stream="trade.executed"' not in other and "handler broke" not in other


def test_an_admin_replays_dead_letters_and_it_is_audited(alpha, streams):
    (dead,) = bus.dlq_list(schema=streams)
    admin = dashboard_client(alpha, "admin")
    assert "data-replay" in admin.get("/app/events/").content.decode()
    r = admin.post("/app/events/dlq/replay/", {"id": [dead["dlq_id"]]})
    assert r.status_code == 302 and r["Location"] == "/app/events/"
    assert bus.dlq_list(schema=streams) == []
    assert bus.stream_info("position.opened", schema=streams)["length"] == 2  # back in its stream
    with schema_context(streams):
        (record,) = AuditRecord.objects.filter(action="events.dlq_replayed")
        assert record.details == {"count": 1, "ids": [dead["dlq_id"]]} and record.actor.startswith("user:")


def test_a_viewer_cannot_replay_and_an_unknown_id_replays_nothing(alpha, beta, streams):
    (dead,) = bus.dlq_list(schema=streams)
    r = dashboard_client(alpha, "viewer").post("/app/events/dlq/replay/", {"id": [dead["dlq_id"]]})
    assert r.status_code == 403
    r = dashboard_client(alpha, "analyst").post("/app/events/dlq/replay/", {})
    assert r.status_code == 403
    r = dashboard_client(alpha, "admin").post("/app/events/dlq/replay/", {"id": [dead["dlq_id"], "1-0"]})
    assert r.status_code == 400 and "Not in the dead-letter queue: 1-0" in r.content.decode()
    r = dashboard_client(beta, "owner").post("/app/events/dlq/replay/", {"id": [dead["dlq_id"]]})
    assert r.status_code == 400  # another tenant's dead letter is not in this tenant's queue
    assert [d["dlq_id"] for d in bus.dlq_list(schema=streams)] == [dead["dlq_id"]]  # nothing replayed
    with schema_context(streams):
        assert not AuditRecord.objects.filter(action="events.dlq_replayed").exists()
