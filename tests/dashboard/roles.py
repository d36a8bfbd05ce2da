"""Role-based actions of the dashboard, shared by the client test (tests/dashboard/test_role_actions.py)
and the browser walk (tests/browser/test_role_hiding.py): a tenant holding one of everything a
page has an action for, every state-changing POST with the least role that may send it, and the
pages to walk."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.models import ROLE_RANK, Role

MODEL = "role-model"
FLOW = "role-flow"


@dataclass
class World:
    ids: dict = field(default_factory=dict)

    def path(self, template: str) -> str:
        return template.format(**self.ids)


def world_build(tenant, owner) -> World:
    """One of every object a page offers an action on, in ``tenant`` (``owner`` acts)."""
    from accounts import services as account_services
    from accounts.models import User
    from analytics.models import Alert
    from billing.models import Invoice
    from configuration.services import config_set
    from intelligence.services import flow_create
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from models_registry.services import registry
    from notifications.models import Delivery, Event
    from notifications.services import subscription_create
    from orchestration.models import WorkflowState
    from tenants.models import ApiKey, Membership
    from tests.models_registry.factories import stored_version
    from tests.orchestration.support import workflow_row

    w = World()
    target = User.objects.create_user(email=f"target-{tenant.slug}@firm.test", password="x" * 16)
    w.ids["member"] = Membership.objects.create(user=target, tenant=tenant, role=Role.VIEWER).pk
    w.ids["key"] = ApiKey.objects.filter(tenant=tenant).first().pk
    invitation, _ = account_services.invitation_create(
        tenant=tenant, email=f"invitee-{tenant.slug}@firm.test", role=Role.ANALYST, invited_by=owner
    )
    w.ids["invitation"] = invitation.pk
    now = timezone.now()
    w.ids["invoice"] = Invoice.objects.create(
        number=f"INV-{tenant.slug}"[:32], tenant=tenant, plan=tenant.plan.code,
        period_start=now - dt.timedelta(days=30), period_end=now, total=Decimal("100000"),
        due_at=now + dt.timedelta(days=7),
    ).pk  # fmt: skip
    with schema_context(tenant.schema_name):
        raw = read_table(as_csv(generate_bars(120, seed=3)), "csv")
        md_services.bars_import(tenant=tenant, symbol="ROLE", timeframe="1d", raw=raw)
        v1, v2 = stored_version(MODEL, seed=1), stored_version(MODEL, seed=2)
        registry.model_deploy(model=v1.model, version=v1, actor=owner)
        registry.model_deploy(model=v1.model, version=v2, actor=owner)  # a rollback is possible
        registry.model_deploy(model=v1.model, version=v1, alias="challenger", actor=owner)
        flow_create(tenant=tenant, name=FLOW, config={"min_confidence": 0.7}, actor=owner)
        flow_create(tenant=tenant, name=FLOW, config={"min_confidence": 0.6}, actor=owner)  # v1 inactive
        for max_position in (5, 9):  # dev history to restore from, and a change for staging to promote
            config_set(tenant=tenant, environment="dev", values={"controls": {"max_position": max_position}},
                       partial=True, actor=owner)  # fmt: skip
        w.ids["alert"] = Alert.objects.create(
            rule="latency", label="Latency", value=900, threshold=500, message="p99 latency 900 ms > 500 ms",
            last_seen_at=now,
        ).pk  # fmt: skip
        w.ids["sub"] = subscription_create(
            data={"events": ["model.deployed"], "channel": "inapp"}, user_id=owner.pk, tenant_wide=True,
            is_admin=True, actor=owner,
        ).pk  # fmt: skip
        event = Event.objects.create(type="model.deployed", data={"name": MODEL, "version": 1})
        w.ids["delivery"] = Delivery.objects.create(
            event=event, channel="email", target="email:ops@firm.test", idempotency_key=f"{event.pk}:dead",
            status=Delivery.Status.DEAD, attempts=6, last_error="E-mail not accepted",
        ).pk  # fmt: skip
        w.ids["workflow"] = workflow_row("role-wf").pk  # awaiting approval
        w.ids["failed_workflow"] = workflow_row("role-wf-failed", state=WorkflowState.FAILED).pk
    w.ids.update(model=MODEL, flow=FLOW, rule="availability", webhook=1)
    return w


# (what, least role that may, path template, form data) — every state-changing POST of the dashboard
# a member below admin (or below analyst) must not send
ACTIONS = [
    ("API key create", Role.ADMIN, "/app/api-keys/", {"name": "bot", "scopes": ["read"]}),
    ("API key revoke", Role.ADMIN, "/app/api-keys/{key}/revoke/", {}),
    ("member invite", Role.ADMIN, "/app/members/invite/", {"email": "new@firm.test", "role": "viewer"}),
    ("member role change", Role.ADMIN, "/app/members/{member}/role/", {"role": "admin"}),
    ("member remove", Role.ADMIN, "/app/members/{member}/remove/", {}),
    ("invitation revoke", Role.ADMIN, "/app/invitations/{invitation}/revoke/", {}),
    ("data import", Role.ANALYST, "/app/data/", {"symbol": "NEW", "timeframe": "1d"}),
    ("feature set create", Role.ANALYST, "/app/features/", {"name": "mine", "spec": '{"features": []}'}),
    (
        "model train",
        Role.ANALYST,
        "/app/models/",
        {
            "model": "m2",
            "symbol": "ROLE",
            "timeframe": "1d",
            "feature_set": "default",
            "target": "direction",
            "horizon": "1",
            "n_trials": "1",
        },
    ),  # fmt: skip
    ("model deploy", Role.ADMIN, "/app/models/{model}/", {"action": "deploy", "deploy-version": "1"}),
    ("model rollback", Role.ADMIN, "/app/models/{model}/", {"action": "rollback"}),
    ("A/B abort", Role.ADMIN, "/app/models/{model}/", {"action": "ab_abort"}),
    ("A/B promote", Role.ADMIN, "/app/models/{model}/", {"action": "ab_promote"}),
    ("kill switch engage", Role.ADMIN, "/app/kill-switch/", {"reason": "stop"}),
    ("event dead letters replay", Role.ADMIN, "/app/events/dlq/replay/", {}),
    ("config save", Role.ADMIN, "/app/config/dev/change/", {"action": "save", "controls.max_position": "1"}),
    ("config promote", Role.ADMIN, "/app/config/staging/change/", {"action": "promote"}),
    ("config restore", Role.ADMIN, "/app/config/dev/change/", {"action": "restore", "version": "1"}),
    ("flow create", Role.ADMIN, "/app/flows/", {"name": "new-flow", "config": "{}", "activate": "on"}),
    ("flow activate", Role.ADMIN, "/app/flows/{flow}/v/1/activate/", {}),
    ("backtest run", Role.ANALYST, "/app/backtests/", {"symbol": "ROLE", "strategy": "sma_cross", "timeframe": "1d"}),
    ("risk batch start", Role.ANALYST, "/app/risk/batches/", {"analysis": "risk", "symbols": "ROLE"}),
    ("plan change", Role.ADMIN, "/app/billing/plan/", {"plan": "enterprise"}),
    ("invoice pay", Role.ADMIN, "/app/billing/invoices/{invoice}/pay/", {}),
    ("alert acknowledge", Role.ANALYST, "/app/notifications/alerts/{alert}/ack/", {}),
    (
        "alert rule create",
        Role.ADMIN,
        "/app/notifications/alert-rules/",
        {"name": "mine", "metric": "error_rate", "comparator": "above", "threshold": "0.1", "severity": "warning"},
    ),  # fmt: skip
    ("alert rule change", Role.ADMIN, "/app/notifications/alert-rules/{rule}/", {"threshold": "0.5"}),
    ("alert rule delete", Role.ADMIN, "/app/notifications/alert-rules/{rule}/", {"action": "delete"}),
    ("webhook create", Role.ADMIN, "/app/notifications/webhooks/", {"name": "crm", "url": "https://example.com/h"}),
    ("webhook rotate", Role.ADMIN, "/app/notifications/webhooks/{webhook}/rotate/", {}),
    (
        "tenant-wide subscription",
        Role.ADMIN,
        "/app/notifications/subscriptions/",
        {"events": "model.deployed", "channel": "inapp", "tenant_wide": "on"},
    ),  # fmt: skip
    ("tenant-wide subscription toggle", Role.ADMIN, "/app/notifications/subscriptions/{sub}/toggle/", {}),
    ("tenant-wide subscription delete", Role.ADMIN, "/app/notifications/subscriptions/{sub}/delete/", {}),
    ("delivery retry", Role.ADMIN, "/app/notifications/deliveries/{delivery}/retry/", {}),
    ("dead deliveries retry", Role.ADMIN, "/app/notifications/deliveries/retry-dead/", {}),
    (
        "Telegram bot register",
        Role.ADMIN,
        "/app/notifications/telegram/",
        {"action": "register", "name": "b", "token": "1:x"},
    ),  # fmt: skip
    ("Telegram chat add", Role.ADMIN, "/app/notifications/telegram/", {"action": "add_chat", "bot": "1"}),
    (
        "workflow start",
        Role.ANALYST,
        "/app/workflows/",
        {"model": "wf2", "symbol": "ROLE", "timeframe": "1d", "feature_set": "default", "n_trials": "1"},
    ),  # fmt: skip
    ("workflow approve", Role.ADMIN, "/app/workflows/{workflow}/approve/", {}),
    ("workflow reject", Role.ADMIN, "/app/workflows/{workflow}/reject/", {}),
    ("workflow cancel", Role.ANALYST, "/app/workflows/{workflow}/cancel/", {}),
    ("workflow retry", Role.ANALYST, "/app/workflows/{failed_workflow}/retry/", {}),
    ("getting started: train", Role.ANALYST, "/app/onboarding/train/", {}),
    ("getting started: deploy", Role.ADMIN, "/app/onboarding/deploy/", {}),
]


def forbidden_actions(role: str) -> list[tuple]:
    return [a for a in ACTIONS if ROLE_RANK[role] < ROLE_RANK[a[1]]]


def world_state(tenant) -> dict:
    """What any of the actions would change, to compare before and after."""
    from accounts.models import Invitation
    from analytics.models import Alert, AlertRule
    from billing.models import Payment
    from compliance.models import AuditRecord
    from configuration.models import ConfigVersion
    from features.models import FeatureSet
    from intelligence.models import Flow
    from marketdata.models import Instrument
    from models_registry.models import ModelAlias, TrainingJob
    from notifications.models import Delivery, Subscription, WebhookEndpoint
    from orchestration.models import Workflow
    from tenants.models import ApiKey, KillSwitch, Membership, Tenant

    state = {
        "keys": sorted(ApiKey.objects.filter(tenant=tenant, revoked_at=None).values_list("pk", flat=True)),
        "members": sorted(Membership.objects.filter(tenant=tenant).values_list("pk", "role")),
        "invitations": sorted(
            Invitation.objects.filter(tenant=tenant, accepted_at=None, revoked_at=None).values_list("pk", flat=True)
        ),
        "plan": Tenant.objects.get(pk=tenant.pk).plan.code,
        "payments": Payment.objects.filter(invoice__tenant=tenant).count(),
        "kill": KillSwitch.objects.filter(tenant=tenant).count(),
    }
    with schema_context(tenant.schema_name):
        state.update(
            audit=AuditRecord.objects.count(),
            aliases=sorted(ModelAlias.objects.values_list("name", "version__version")),
            jobs=TrainingJob.objects.count(),
            flows=sorted(Flow.objects.values_list("name", "version", "active")),
            config=ConfigVersion.objects.count(),
            feature_sets=FeatureSet.objects.count(),
            instruments=Instrument.objects.count(),
            acknowledged=Alert.objects.exclude(acknowledged_at=None).count(),
            rules=sorted(AlertRule.objects.values_list("name", "threshold", "enabled")),
            subscriptions=sorted(Subscription.objects.values_list("pk", "enabled")),
            deliveries=sorted(Delivery.objects.values_list("pk", "status")),
            webhooks=WebhookEndpoint.objects.count(),
            workflows=sorted((str(pk), state) for pk, state in Workflow.objects.values_list("pk", "state")),
        )
    return state
