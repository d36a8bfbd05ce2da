"""The Risk batch jobs pages: an analyst starts a batch from the form (through riskcore's
batch_create, like the API), the detail page shows per-symbol results once the task ran; viewers
see no form and get 403 on POST; another tenant's batch is a 404; the list filters and pages."""

import pytest
from django_tenants.utils import schema_context

from riskcore import services
from riskcore.models import BatchJob
from tests.dashboard.support import dashboard_client
from tests.riskcore.helpers import import_bars

pytestmark = pytest.mark.django_db


def _count(fx) -> int:
    with schema_context(fx.tenant.schema_name):
        return BatchJob.objects.count()


def test_analyst_starts_a_batch_and_sees_its_results(alpha, beta):
    import_bars(alpha, "RKA", 300, seed=1)
    import_bars(alpha, "RKB", 10, seed=2)  # too few bars: an error code in its row
    c = dashboard_client(alpha, "analyst")
    page = c.get("/app/risk/batches/").content.decode()
    assert 'data-form="risk-batch"' in page and 'value="RKA"' in page
    bad = c.post("/app/risk/batches/", {"analysis": "risk"})
    assert bad.status_code == 400 and "Pick at least one instrument" in bad.content.decode()
    bad = c.post("/app/risk/batches/", {"analysis": "nope", "all": "on"})
    assert bad.status_code == 400 and _count(alpha) == 0
    r = c.post("/app/risk/batches/", {"analysis": "risk", "all": "on"})
    assert r.status_code == 302
    with schema_context(alpha.tenant.schema_name):
        job = BatchJob.objects.get()
        assert job.analysis == "risk" and sorted(job.symbols) == ["RKA", "RKB"]
    assert r["Location"] == f"/app/risk/batches/{job.pk}/"
    running = c.get(r["Location"]).content.decode()
    assert 'hx-trigger="every 2s"' in running
    with schema_context(alpha.tenant.schema_name):
        assert services.batch_run(batch_id=job.pk) == "done"
    html = c.get(r["Location"]).content.decode()
    assert 'data-state="done"' in html and 'hx-trigger="every 2s"' not in html
    assert 'data-result="RKA"' in html and "volatility" in html and "insufficient_bars" in html
    assert 'href="/app/risk/RKA/"' in html
    assert dashboard_client(beta, "owner").get(r["Location"]).status_code == 404


def test_viewer_sees_no_form_and_cannot_post(alpha):
    import_bars(alpha, "RKA", 40, seed=1)
    c = dashboard_client(alpha, "viewer")
    assert 'data-form="risk-batch"' not in c.get("/app/risk/batches/").content.decode()
    assert c.post("/app/risk/batches/", {"analysis": "risk", "all": "on"}).status_code == 403
    assert _count(alpha) == 0
    assert 'href="/app/risk/batches/"' in c.get("/app/risk/").content.decode()
    assert 'href="/app/risk/batches/"' in c.get("/app/").content.decode()


def test_list_filters_and_pages(alpha):
    import_bars(alpha, "RKA", 40, seed=1)
    with schema_context(alpha.tenant.schema_name):
        for i in range(30):
            BatchJob.objects.create(analysis="risk" if i % 2 else "forecast", symbols=["RKA"],
                                    status="done" if i < 3 else "pending")  # fmt: skip
    c = dashboard_client(alpha, "viewer")
    html = c.get("/app/risk/batches/").content.decode()
    assert 0 < html.count("data-batch=") < 30 and "<progress" in html
    forecast = c.get("/app/risk/batches/?analysis=forecast").content.decode()
    assert forecast.count("data-batch=") == 15 and "<b>#" in forecast and " risk</b>" not in forecast
    done = c.get("/app/risk/batches/?state=done").content.decode()
    assert done.count("data-batch=") == 3
    assert c.get("/app/risk/batches/?page=2").status_code == 200
