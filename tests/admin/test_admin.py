"""Django admin: platform staff manage tenants and keys; compliance reviews a tenant's audit trail."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import Invitation, User
from compliance.models import AuditRecord
from compliance.services import audit_record
from tenants.admin import COMPLIANCE_GROUP, TenantScopedModelAdmin
from tenants.middleware import SESSION_TENANT_KEY
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create, tenant_provision
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

AUDIT_URL = "/admin/compliance/auditrecord/"
APIKEY_URL = "/admin/tenants/apikey/"
TENANT_URL = "/admin/tenants/tenant/"


def _client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def root(db):
    return User.objects.create_superuser(email="root@admin.test", password=PASSWORD)


@pytest.fixture
def su(root) -> Client:
    return _client(root)


def _staff(email: str, *groups: str) -> User:
    user = User.objects.create_user(email=email, password=PASSWORD, is_staff=True)
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def _switch(client: Client, tenant: Tenant | None):
    return client.post("/admin/tenant-switch/", {"tenant": tenant.pk if tenant else ""})


def _api_status(raw_key: str) -> int:
    return Client().get("/api/v1/tenant/", HTTP_AUTHORIZATION=f"Api-Key {raw_key}").status_code


def _action(client: Client, url: str, action: str, *pks: int):
    return client.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks]})


# --- every page renders ------------------------------------------------------------------------


def test_changelist_and_change_page_of_every_registered_model_render_for_a_superuser(su, alpha, beta):
    # given: one object of every registered model (public ones, and alpha's audit trail)
    Group.objects.get_or_create(name=COMPLIANCE_GROUP)
    Invitation.objects.create(
        tenant=alpha.tenant,
        email="invitee@admin.test",
        token_hash="f" * 64,
        invited_by=alpha.users["owner"],
        expires_at=timezone.now() + dt.timedelta(days=7),
    )
    from billing import services as billing
    from billing.models import Invoice, Payment, PaymentNotification

    billing.subscription_change(tenant=beta.tenant, plan="pro", actor="t")  # a subscription and a revenue event
    invoice = Invoice.objects.create(
        number="INV-ADMIN-1", tenant=alpha.tenant, plan="pro", period_start=timezone.now(), period_end=timezone.now(),
        total=1490000, due_at=timezone.now(), lines=[{"description": "Pro", "amount": "1490000"}],
    )  # fmt: skip
    Payment.objects.create(invoice=invoice, provider="midtrans", order_id="INV-ADMIN-1-1", gross_amount=1490000)
    PaymentNotification.objects.create(provider="midtrans", order_id="INV-ADMIN-1-1", outcome="rejected")
    from tenants.models import KillSwitch

    KillSwitch.objects.create(tenant=beta.tenant, reason="admin page check", engaged_by="t")
    from compliance.credentials import credential_create

    with schema_context(alpha.tenant.schema_name):  # a credential (compliance.Credential)
        credential_create(name="admin-page", kind="other", secret="admin-page-secret-value", actor="t")
    from configuration.services import config_set

    with schema_context(alpha.tenant.schema_name):  # a configuration version (configuration.ConfigVersion)
        config_set(tenant=alpha.tenant, environment="dev", values={"feed": {"publish": False}}, partial=True, actor="t")
    with schema_context(alpha.tenant.schema_name):  # a subscription and a delivery (notifications)
        from notifications.models import Delivery, Event, Subscription

        Subscription.objects.create(events=["model.deployed"], channel="inapp", user_id=1, created_by="t")
        event = Event.objects.create(type="model.deployed", data={"name": "m", "version": 1})
        Delivery.objects.create(event=event, channel="inapp", target="inapp:1", idempotency_key=f"{event.pk}:inapp:1")
    with schema_context(alpha.tenant.schema_name):  # a workflow with its steps (orchestration.Workflow)
        from tests.orchestration.support import workflow_row

        workflow_row("admin-page")
    with schema_context(alpha.tenant.schema_name):  # a batch job, an anomaly, fundamentals (riskcore)
        from riskcore.models import Anomaly, BatchJob, Fundamentals

        BatchJob.objects.create(analysis="risk", symbols=["ADM"], created_by="t")
        Anomaly.objects.create(kind="bar_return", symbol="ADM", timeframe="1d", ts=timezone.now(), value=0.2,
                               score=7.5, method="robust_z")  # fmt: skip
        Fundamentals.objects.create(symbol="ADM", shares_outstanding=10, earnings=1, book_value=5)
    from tests.review.conftest import decide, index

    decide(alpha.tenant, 1)  # a decision in the compliance review index (review.ReviewItem)
    index(alpha.tenant)
    public = {m: a for m, a in admin.site._registry.items() if not isinstance(a, TenantScopedModelAdmin)}
    scoped = {m: a for m, a in admin.site._registry.items() if isinstance(a, TenantScopedModelAdmin)}
    assert Tenant in public and ApiKey in public and AuditRecord in scoped

    def pages(model, obj):
        opts = model._meta
        base = f"/admin/{opts.app_label}/{opts.model_name}/"
        return [base, f"{base}{obj.pk}/change/"]

    # when/then: public models without an active tenant
    for model in public:
        qs = model._default_manager.all()
        if model is Tenant:
            qs = qs.exclude(status=Tenant.Status.TEMPLATE)
        obj = qs.first()
        assert obj is not None, model
        for url in pages(model, obj):
            r = su.get(url)
            assert r.status_code == 200, (url, r.status_code)

    # when/then: tenant models once alpha is the active tenant (public pages keep working too)
    assert _switch(su, alpha.tenant).status_code == 302
    for model in scoped:
        with schema_context(alpha.tenant.schema_name):
            obj = model._default_manager.first()
        assert obj is not None, model
        for url in pages(model, obj):
            r = su.get(url)
            assert r.status_code == 200, (url, r.status_code)
    assert su.get(APIKEY_URL).status_code == 200
    assert su.get(f"{TENANT_URL}{alpha.tenant.pk}/change/").status_code == 200


def test_index_says_admin_title_and_current_tenant(su, alpha):
    r = su.get("/admin/")
    html = r.content.decode()
    assert r.status_code == 200 and "AI Trading Intelligence admin" in html
    assert "Current tenant:" in html and "/admin/tenant-switch/" in html
    _switch(su, alpha.tenant)
    html = su.get("/admin/").content.decode()
    assert "Current tenant:" in html and "alpha (alpha)" in html


def test_superuser_adds_a_user_with_email_and_password(su):
    # when: the add form is posted with a mixed-case address
    r = su.post(
        "/admin/accounts/user/add/",
        {"email": "New.Person@Admin.TEST", "usable_password": "true", "password1": PASSWORD, "password2": PASSWORD},
    )
    # then: the user exists, lowercased, and can log in with the password
    assert r.status_code == 302, r.content.decode()[:2000]
    user = User.objects.get(email="new.person@admin.test")
    assert user.check_password(PASSWORD)
    # and: the same address in another case is refused
    r = su.post(
        "/admin/accounts/user/add/",
        {"email": "NEW.person@admin.test", "usable_password": "true", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert r.status_code == 200 and "already exists" in r.content.decode()


# --- access ------------------------------------------------------------------------------------


def test_non_staff_user_is_redirected_to_the_admin_login(alpha):
    c = _client(alpha.users["owner"])
    for url in ("/admin/", APIKEY_URL, AUDIT_URL, "/admin/tenant-switch/"):
        r = c.get(url)
        assert r.status_code == 302 and r["Location"].startswith("/admin/login/"), url
    # and switching the tenant is refused as well
    r = _switch(c, alpha.tenant)
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")


# --- tenants -----------------------------------------------------------------------------------


def test_tenant_admin_has_no_add_and_no_delete(su, alpha):
    model_admin = admin.site._registry[Tenant]
    html = su.get(TENANT_URL).content.decode()
    assert "/admin/tenants/tenant/add/" not in html and "delete_selected" not in html
    assert su.get(f"{TENANT_URL}add/").status_code == 403
    assert su.get(f"{TENANT_URL}{alpha.tenant.pk}/delete/").status_code == 403
    assert model_admin.has_delete_permission(None) is False
    # the change page says why and shows the schema read-only
    page = su.get(f"{TENANT_URL}{alpha.tenant.pk}/change/").content.decode()
    assert "drops its PostgreSQL schema" in page and 'name="schema_name"' not in page


def test_template_tenant_is_neither_listed_nor_editable(su, alpha):
    template = Tenant.objects.get(status=Tenant.Status.TEMPLATE)
    html = su.get(TENANT_URL).content.decode()
    assert "alpha" in html and template.slug not in html and "?status=template" not in html
    assert template.slug not in su.get(APIKEY_URL).content.decode()  # nor offered in related filters
    assert "beta" not in su.get(TENANT_URL, {"status": "suspended"}).content.decode()
    r = su.get(f"{TENANT_URL}{template.pk}/change/")
    assert r.status_code == 302  # "doesn't exist" -> back to the index
    assert template.slug not in su.get(f"{TENANT_URL}?q=template").content.decode()


def test_suspend_then_reactivate_cuts_and_restores_the_tenants_api_key(su, root, django_capture_on_commit_callbacks):
    # given: a fresh tenant whose key works (and is now in the resolution cache)
    tenant, raw = tenant_provision(slug="adm-xyz", owner_email="owner@adm-xyz.test", owner_password=PASSWORD)
    assert _api_status(raw) == 200
    # when: staff suspend it
    with django_capture_on_commit_callbacks(execute=True):
        r = _action(su, TENANT_URL, "suspend", tenant.pk)
    assert r.status_code == 302
    # then: the status is set, audited in the tenant's schema, and the cached key stops working
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.SUSPENDED
    with schema_context(tenant.schema_name):
        assert AuditRecord.objects.filter(action="tenant.suspended", actor=f"user:{root.pk}").exists()  # a pseudonym
    r = Client().get("/api/v1/tenant/", HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert r.status_code == 401 and r.json()["error"]["code"] == "tenant_inactive"
    # when/then: reactivation restores it
    with django_capture_on_commit_callbacks(execute=True):
        _action(su, TENANT_URL, "reactivate", tenant.pk)
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE and _api_status(raw) == 200


# --- API keys ----------------------------------------------------------------------------------


def test_api_key_search_finds_by_name_prefix_and_tenant(su, alpha, beta):
    key, _ = api_key_create(tenant=alpha.tenant, name="needle-key", scopes=["read"], created_by=alpha.users["owner"])
    html = su.get(APIKEY_URL, {"q": "needle"}).content.decode()
    assert "needle-key" in html and key.prefix in html and "1 result" in html
    html = su.get(APIKEY_URL, {"q": key.prefix}).content.decode()
    assert "needle-key" in html
    html = su.get(APIKEY_URL, {"q": "beta"}).content.decode()
    assert "needle-key" not in html and "beta" in html


def test_api_key_pages_never_contain_the_hash(su, alpha):
    key, _ = api_key_create(tenant=alpha.tenant, name="secret-check", scopes=["read"], created_by=alpha.users["owner"])
    hashed = ApiKey.objects.values_list("hashed_key", flat=True).get(pk=key.pk)
    assert hashed
    pages = [
        su.get(APIKEY_URL),
        su.get(APIKEY_URL, {"q": "secret-check"}),
        su.get(f"{APIKEY_URL}{key.pk}/change/"),
    ]
    for r in pages:
        html = r.content.decode()
        assert r.status_code == 200 and "secret-check" in html
        assert hashed not in html and "hashed_key" not in html
    # the hash is not searchable either
    assert "secret-check" not in su.get(APIKEY_URL, {"q": hashed}).content.decode()
    # and only the name is editable
    page = pages[2].content.decode()
    assert 'name="name"' in page and 'name="prefix"' not in page and 'name="scopes"' not in page


def test_api_key_name_is_editable_and_the_rest_is_not(su, alpha):
    key, _ = api_key_create(tenant=alpha.tenant, name="old-name", scopes=["read"], created_by=alpha.users["owner"])
    r = su.post(f"{APIKEY_URL}{key.pk}/change/", {"name": "new-name", "prefix": "hacked", "scopes": "admin"})
    assert r.status_code == 302
    key.refresh_from_db()
    assert (key.name, key.scopes) == ("new-name", ["read"]) and key.prefix != "hacked"
    assert su.get(f"{APIKEY_URL}add/").status_code == 403


def test_revoke_action_revokes_and_the_key_then_fails_api_auth(su, root, alpha, django_capture_on_commit_callbacks):
    # given: a fresh key that works (fixture keys are shared by the whole session)
    key, raw = api_key_create(tenant=alpha.tenant, name="to-revoke", scopes=["read"], created_by=alpha.users["owner"])
    assert _api_status(raw) == 200
    # when: staff revoke it from the changelist
    with django_capture_on_commit_callbacks(execute=True):
        r = _action(su, APIKEY_URL, "revoke", key.pk)
    assert r.status_code == 302
    # then: revoked, audited in alpha's schema by the staff user, and refused by the API
    key.refresh_from_db()
    assert key.revoked_at is not None
    with schema_context(alpha.tenant.schema_name):
        rec = AuditRecord.objects.filter(action="api_key.revoked", object_id=str(key.pk)).get()
    assert rec.actor == f"user:{root.pk}"  # a pseudonym: no e-mail in the chained trail
    r = Client().get("/api/v1/tenant/", HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


# --- invitations -------------------------------------------------------------------------------


def test_invitation_pages_are_read_only_and_never_show_the_token_hash(su, alpha):
    inv = Invitation.objects.create(
        tenant=alpha.tenant,
        email="invitee@admin.test",
        token_hash="c0ffee" * 10 + "abcd",
        invited_by=alpha.users["owner"],
        expires_at=timezone.now() + dt.timedelta(days=7),
    )
    for url in ("/admin/accounts/invitation/", f"/admin/accounts/invitation/{inv.pk}/change/"):
        html = su.get(url).content.decode()
        assert "invitee@admin.test" in html
        assert inv.token_hash not in html and "token_hash" not in html
    page = su.get(f"/admin/accounts/invitation/{inv.pk}/change/").content.decode()
    assert 'name="email"' not in page and 'name="_save"' not in page
    assert su.get("/admin/accounts/invitation/add/").status_code == 403


# --- per-tenant data: audit records ------------------------------------------------------------


@pytest.fixture
def audit_ab(alpha, beta):
    with schema_context(alpha.tenant.schema_name):
        audit_record("system", "adm.alpha_only", None, {"n": 1})
    with schema_context(beta.tenant.schema_name):
        audit_record("system", "adm.beta_only", None, {"n": 2})


def test_audit_records_are_hidden_without_an_active_tenant(su, audit_ab):
    html = su.get("/admin/").content.decode()
    assert AUDIT_URL not in html
    # their pages send staff to pick a tenant instead of touching the public schema
    r = su.get(AUDIT_URL)
    assert r.status_code == 302 and r["Location"].startswith("/admin/tenant-switch/?next=")
    assert su.get(f"{AUDIT_URL}1/change/").status_code == 302


def test_after_switching_to_alpha_the_admin_lists_alphas_records_only(su, alpha, beta, audit_ab):
    # when: staff pick alpha
    r = _switch(su, alpha.tenant)
    assert r.status_code == 302 and r["Location"] == "/admin/"
    assert su.session[SESSION_TENANT_KEY] == alpha.tenant.pk
    # then: audit records appear on the index, alpha's only
    assert AUDIT_URL in su.get("/admin/").content.decode()
    r = su.get(AUDIT_URL)
    html = r.content.decode()
    assert r.status_code == 200 and "adm.alpha_only" in html and "adm.beta_only" not in html
    assert "Current tenant:" in html and "alpha" in html
    assert "adm.alpha_only" in su.get(AUDIT_URL, {"q": "alpha_only"}).content.decode()
    # and: a beta record's id opens alpha's record of that id, if any, never beta's
    with schema_context(beta.tenant.schema_name):
        beta_rec = AuditRecord.objects.get(action="adm.beta_only")
    assert "adm.beta_only" not in su.get(f"{AUDIT_URL}{beta_rec.pk}/change/", follow=True).content.decode()
    # when: staff clear the tenant, the records are hidden again
    _switch(su, None)
    assert SESSION_TENANT_KEY not in su.session
    assert AUDIT_URL not in su.get("/admin/").content.decode()


def test_switch_returns_to_next_and_refuses_foreign_redirects(su, alpha):
    r = su.post("/admin/tenant-switch/", {"tenant": alpha.tenant.pk, "next": AUDIT_URL})
    assert r["Location"] == AUDIT_URL
    r = su.post("/admin/tenant-switch/", {"tenant": alpha.tenant.pk, "next": "https://evil.example/"})
    assert r["Location"] == "/admin/"
    assert su.get("/admin/tenant-switch/").status_code == 200


def test_suspended_tenant_cannot_be_picked(su, alpha):
    suspended, _ = tenant_provision(slug="adm-sus", create_key=False)
    Tenant.objects.filter(pk=suspended.pk).update(status=Tenant.Status.SUSPENDED)
    r = _switch(su, suspended)
    assert r.status_code == 200 and SESSION_TENANT_KEY not in su.session


def test_audit_records_are_fully_read_only_even_for_a_superuser(su, alpha, audit_ab):
    _switch(su, alpha.tenant)
    with schema_context(alpha.tenant.schema_name):
        rec = AuditRecord.objects.get(action="adm.alpha_only")
    html = su.get(AUDIT_URL).content.decode()
    assert f"{AUDIT_URL}add/" not in html and "delete_selected" not in html
    page = su.get(f"{AUDIT_URL}{rec.pk}/change/").content.decode()
    assert "adm.alpha_only" in page and 'name="_save"' not in page and 'name="action"' not in page
    assert su.post(f"{AUDIT_URL}{rec.pk}/change/", {"action": "forged"}).status_code == 403
    assert su.get(f"{AUDIT_URL}{rec.pk}/delete/").status_code == 403
    assert su.get(f"{AUDIT_URL}add/").status_code == 403


def test_compliance_staff_can_view_but_not_change_audit_records(alpha, audit_ab):
    c = _client(_staff("reviewer@admin.test", COMPLIANCE_GROUP))
    # without a tenant: nothing shown, the page asks for a tenant
    assert AUDIT_URL not in c.get("/admin/").content.decode()
    assert c.get(AUDIT_URL)["Location"].startswith("/admin/tenant-switch/")
    # with alpha active: view the list and a record
    assert _switch(c, alpha.tenant).status_code == 302
    index = c.get("/admin/").content.decode()
    assert AUDIT_URL in index and APIKEY_URL not in index  # no per-model perms on public models
    r = c.get(AUDIT_URL)
    assert r.status_code == 200 and "adm.alpha_only" in r.content.decode()
    with schema_context(alpha.tenant.schema_name):
        rec = AuditRecord.objects.get(action="adm.alpha_only")
    page = c.get(f"{AUDIT_URL}{rec.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    # but never change or delete
    assert c.post(f"{AUDIT_URL}{rec.pk}/change/", {"action": "forged"}).status_code == 403
    assert c.get(f"{AUDIT_URL}{rec.pk}/delete/").status_code == 403
    with schema_context(alpha.tenant.schema_name):
        assert AuditRecord.objects.get(pk=rec.pk).action == "adm.alpha_only"
        # and what the reviewer read is in alpha's own trail, under the reviewer's pseudonym
        viewed = list(AuditRecord.objects.filter(action="staff.admin_viewed").order_by("id"))
    reviewer = User.objects.get(email="reviewer@admin.test")
    assert [(v.actor, v.details["model"], v.details["object_id"]) for v in viewed] == [
        (f"user:{reviewer.pk}", "compliance.auditrecord", None),
        (f"user:{reviewer.pk}", "compliance.auditrecord", str(rec.pk)),
    ]


def test_staff_outside_the_compliance_group_cannot_see_audit_records(alpha, audit_ab):
    c = _client(_staff("ops@admin.test", "support"))
    assert c.get(AUDIT_URL).status_code == 403
    _switch(c, alpha.tenant)
    assert AUDIT_URL not in c.get("/admin/").content.decode()
    assert c.get(AUDIT_URL).status_code == 403
    with schema_context(alpha.tenant.schema_name):
        rec = AuditRecord.objects.get(action="adm.alpha_only")
    assert c.get(f"{AUDIT_URL}{rec.pk}/change/").status_code == 403


def test_status_change_on_the_tenant_form_is_audited_and_drops_cached_resolution(
    su, django_capture_on_commit_callbacks
):
    # given: a fresh tenant (owner only, one domain) whose key works
    tenant, raw = tenant_provision(slug="adm-form", owner_email="owner@adm-form.test", owner_password=PASSWORD)
    assert _api_status(raw) == 200
    domain = tenant.domains.get()
    membership = tenant.memberships.get()
    # when: staff set it to suspended on its change form (the template status is not offered)
    page = su.get(f"{TENANT_URL}{tenant.pk}/change/").content.decode()
    assert 'value="suspended"' in page and 'value="template"' not in page
    data = {
        "name": "Renamed",
        "plan": tenant.plan_id,
        "status": "suspended",
        "domains-TOTAL_FORMS": "1",
        "domains-INITIAL_FORMS": "1",
        "domains-0-id": domain.pk,
        "domains-0-tenant": tenant.pk,
        "domains-0-domain": domain.domain,
        "domains-0-is_primary": "on",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "1",
        "memberships-0-id": membership.pk,
        "memberships-0-tenant": tenant.pk,
        "memberships-0-user": membership.user_id,
        "memberships-0-role": membership.role,
    }
    with django_capture_on_commit_callbacks(execute=True):
        r = su.post(f"{TENANT_URL}{tenant.pk}/change/", data)
    assert r.status_code == 302, r.content.decode()[:3000]
    # then: saved, audited in the tenant's schema, and the key is refused at once
    tenant.refresh_from_db()
    assert (tenant.name, tenant.status) == ("Renamed", Tenant.Status.SUSPENDED)
    with schema_context(tenant.schema_name):
        assert AuditRecord.objects.filter(action="tenant.suspended").exists()
    assert _api_status(raw) == 401
