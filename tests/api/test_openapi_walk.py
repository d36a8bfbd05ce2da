"""Walk every operation of the OpenAPI document as two tenants and every kind of caller.

The document drives the walk: an endpoint is covered because it appears in the schema, with no
edit here. Each operation is resolved to its view, and what a caller may do is computed from the
view's declared ``access`` (``tenants.permissions.required_access`` + ``ROLE_RANK``). Checked:

1. no 5xx, for any operation and any caller (public routes too);
2. isolation: another tenant's object ids, credentials sent to another tenant's host, and a
   person who is not a member all give 404 ``not_found`` without echoing the other tenant's data
   or changing its objects;
3. access: callers below the view's requirement get 403 ``insufficient_role`` /
   ``insufficient_scope`` and change nothing; callers at or above never get 401/403;
4. conformance: every response's status is documented and its JSON body validates against the
   schema the document declares for that status ($refs resolved against the document, OpenAPI 3.0
   ``nullable`` honoured, and no undocumented fields).

A short schemathesis property run on top fuzzes parameters and bodies of every operation: valid
requests (no 5xx, statuses, content types and bodies as documented) and invalid ones (negative
generation: each must be refused with a documented 4xx).

Objects named by path parameters come from ``OBJECT_FACTORIES`` (keyed by parameter name);
failing that, from the operation's collection (``POST`` with a generated body, else the first
item ``GET`` lists). A new endpoint shaped like the existing ones needs nothing here; one that is
not gets a failure saying which factory to add. Every write rolls back with the test.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.core import signals
from django.db import close_old_connections
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from drf_spectacular.settings import spectacular_settings
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from rest_framework.test import APIClient

from accounts.models import Invitation, User
from tenants.models import ROLE_RANK, Membership, Role, Scope
from tenants.permissions import Access, TenantAccess, required_access
from tenants.services import _api_key_insert
from tests.conftest import PASSWORD, TenantFixture, error_code

pytestmark = pytest.mark.django_db

SCHEMA_URL = "/api/schema/?format=json"
TENANT_URLCONF = settings.ROOT_URLCONF
PUBLIC_URLCONF = settings.PUBLIC_SCHEMA_URLCONF
HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# generated requests per operation in the fuzz walk: 12 keeps `make test` within its time (317
# operations); WALK_EXAMPLES=100 (e.g. nightly) fuzzes deeper
PROPERTY_EXAMPLES = int(os.environ.get("WALK_EXAMPLES", "12"))
# Routes allowed to answer 503 by design, and how to recognise the designed answer.
DEGRADABLE = {"/health/ready": lambda r: r.json().get("status") == "degraded"}


# --- the document ------------------------------------------------------------------------------


def _generate_document() -> dict:
    """The document SpectacularAPIView serves (same generator, urlconf and visibility), as JSON."""
    generator = spectacular_settings.DEFAULT_GENERATOR_CLASS(urlconf=spectacular_settings.SERVE_URLCONF)
    return json.loads(
        json.dumps(generator.get_schema(request=None, public=spectacular_settings.SERVE_PUBLIC), default=str)
    )


DOC = _generate_document()


def _pointer(doc: dict, ref: str):
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _deref(node):
    while isinstance(node, dict) and "$ref" in node:
        node = _pointer(DOC, node["$ref"])
    return node


# --- operations, resolved to their views -------------------------------------------------------


def _placeholder(schema: dict) -> str:
    schema = _deref(schema)
    if schema.get("format") == "uuid":
        return str(uuid.UUID(int=1))
    if schema.get("type") == "integer":
        return "1"
    return str((schema.get("enum") or ["walk"])[0])


# Objects a tenant names itself (a model, a feature set, a flow): another tenant's name must 404 like
# another tenant's id. Not ``environment``: every tenant has the same fixed environments.
NAMED_OBJECT_PARAMS = ("name", "ref", "flow_name", "rule_name")


def _is_object_param(param: dict) -> bool:
    """Does this path parameter name an object (and so must not reach another tenant's)?"""
    name, schema = param["name"], _deref(param.get("schema", {}))
    return (
        name in ("id", "pk", "uuid")
        or name in NAMED_OBJECT_PARAMS
        or name.endswith(("_id", "_pk", "_uuid"))
        or schema.get("type") == "integer"
        or schema.get("format") == "uuid"
    )


@dataclass(eq=False)
class Operation:
    path: str  # template, e.g. /api/v1/api-keys/{key_id}/
    method: str  # upper case
    spec: dict = field(repr=False)
    params: list[dict] = field(repr=False)
    view: object = field(init=False, repr=False)
    guarded: bool = field(init=False)  # by TenantAccess: the tenant/role/scope rules apply
    public_route: bool = field(init=False)  # also routed without a tenant

    def __post_init__(self) -> None:
        concrete = self.url({p["name"]: _placeholder(p.get("schema", {})) for p in self.path_params})
        try:
            match = resolve(concrete.split("?")[0], urlconf=TENANT_URLCONF)
        except Resolver404:
            raise AssertionError(
                f"{self}: the documented path {concrete} does not resolve in {TENANT_URLCONF}"
            ) from None
        func = match.func
        cls = getattr(func, "cls", None) or func.view_class
        self.view = cls(**(getattr(func, "initkwargs", None) or getattr(func, "view_initkwargs", None) or {}))
        if actions := getattr(func, "actions", None):  # a ViewSet: the action this method maps to
            self.view.action = actions.get(self.method.lower())
        get_permissions = getattr(self.view, "get_permissions", lambda: [])
        self.guarded = any(isinstance(p, TenantAccess) for p in get_permissions())
        try:
            resolve(concrete.split("?")[0], urlconf=PUBLIC_URLCONF)
            self.public_route = True
        except Resolver404:
            self.public_route = False

    def __str__(self) -> str:
        return self.spec.get("operationId") or f"{self.method} {self.path}"

    @property
    def id(self) -> str:
        return str(self)

    @property
    def access(self) -> Access:
        return required_access(self.view, self.method)

    @property
    def path_params(self) -> list[dict]:
        return [p for p in self.params if p.get("in") == "path"]

    @property
    def object_params(self) -> list[dict]:
        return [p for p in self.path_params if _is_object_param(p)]

    def url(self, values: dict) -> str:
        path = self.path
        for name, value in values.items():
            path = path.replace("{" + name + "}", str(getattr(value, "value", value)))
        query = [
            (p["name"], _example(p.get("schema", {})))
            for p in self.params
            if p.get("in") == "query" and p.get("required")
        ]
        if query:
            path += "?" + urlencode(query)
        return path


def _example(schema: dict):
    """A small deterministic instance of an OpenAPI schema: required fields only, shortest values."""
    schema = _deref(schema)
    if "allOf" in schema:
        parts = [_example(s) for s in schema["allOf"]]
        if all(isinstance(p, dict) for p in parts):
            return {k: v for p in parts for k, v in p.items()}
        return parts[0]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            options = [s for s in schema[key] if _deref(s).get("type") != "null"] or schema[key]
            return _example(options[0])
    for key in ("example", "default"):
        if key in schema:
            return schema[key]
    if "enum" in schema:
        return next(v for v in schema["enum"] if v is not None)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {
            name: _example(props.get(name, {}))
            for name in schema.get("required", [])
            if not _deref(props.get(name, {})).get("readOnly")
        }
    if kind == "array":
        n = max(schema.get("minItems", 1), 1)
        return [_example(schema.get("items", {}))] * min(n, schema.get("maxItems", n))
    if kind in ("integer", "number"):
        low = schema.get("minimum", 1)
        low += 1 if schema.get("exclusiveMinimum") is True else 0
        return min(max(low, 1), schema.get("maximum", max(low, 1)))
    if kind == "boolean":
        return True
    fmt = schema.get("format")
    value = {
        "email": "walk@example.com",
        "date-time": dt.datetime.now(dt.UTC).isoformat(),
        "date": dt.date.today().isoformat(),
        "uuid": str(uuid.UUID(int=1)),
        "uri": "https://example.com/",
        "ipv4": "192.0.2.1",
        "decimal": "1.00",
    }.get(fmt, "walk")
    value = value.ljust(schema.get("minLength", 0), "x")[: schema.get("maxLength", len(value) or None)]
    pattern = schema.get("pattern")
    assert pattern is None or re.search(pattern, value), (
        f"cannot generate a string matching {pattern!r}; add the operation to BODY_HINTS"
    )
    return value


def _operations(doc: dict) -> list[Operation]:
    ops = []
    for path, item in doc["paths"].items():
        shared = [_deref(p) for p in item.get("parameters", [])]
        for method, spec in item.items():
            if method not in HTTP_METHODS:
                continue
            own = [_deref(p) for p in spec.get("parameters", [])]
            keys = {(p["in"], p["name"]) for p in own}
            ops.append(
                Operation(path, method.upper(), spec, [p for p in shared if (p["in"], p["name"]) not in keys] + own)
            )
    return ops


OPERATIONS = _operations(DOC)
OPS_BY_KEY = {(op.path, op.method): op for op in OPERATIONS}
# A tenant operation is guarded by TenantAccess or routed only once a tenant is resolved: an unguarded
# tenant route stays in the tenant walk, so its missing checks fail there too.
TENANT_OPS = [op for op in OPERATIONS if op.guarded or not op.public_route]
PUBLIC_OPS = [op for op in OPERATIONS if op not in TENANT_OPS]
OBJECT_OPS = [op for op in TENANT_OPS if op.object_params]


# --- callers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """A member of the tenant (JWT with a role), or an API key with some scopes."""

    kind: str  # "role" | "scope" | "key"
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    def client(self, fx: TenantFixture) -> APIClient:
        if self.kind == "role":
            return fx.client(role=self.name)
        if self.kind == "scope":
            return fx.client(scope=self.name)
        return fx.client()

    def denial(self, need: Access) -> str | None:
        """The 403 code this caller must get for ``need``, or None when it is allowed."""
        if self.kind == "role":
            return None if ROLE_RANK[self.name] >= ROLE_RANK[need.role] else "insufficient_role"
        scopes = Scope.values if self.kind == "key" else [self.name]
        return None if need.scope in scopes else "insufficient_scope"


CALLERS = (
    [Caller("role", r) for r in Role.values]
    + [Caller("scope", s) for s in Scope.values]
    + [Caller("key", "all-scopes")]
)


# --- objects for path parameters ---------------------------------------------------------------


@dataclass(frozen=True)
class Obj:
    value: object
    markers: tuple[str, ...] = ()  # strings that only this object's tenant may ever see


def _api_key_object(fx: TenantFixture) -> Obj:
    # a direct insert, like the session fixtures: beta (free plan) is already at its key cap
    key, _ = _api_key_insert(
        tenant=fx.tenant,
        name=f"walk-{fx.slug}-{uuid.uuid4().hex[:10]}",
        scopes=[Scope.READ],
        created_by=fx.users[Role.OWNER],
    )
    return Obj(key.pk, (key.name, key.prefix))


def _member_object(fx: TenantFixture) -> Obj:
    # a fresh viewer: every caller allowed to manage members may change or remove a viewer
    user = User.objects.create_user(email=f"walk-{uuid.uuid4().hex[:10]}@{fx.slug}.test", password=None)
    membership = Membership.objects.create(user=user, tenant=fx.tenant, role=Role.VIEWER)
    return Obj(membership.pk, (user.email,))


def _invitation_object(fx: TenantFixture) -> Obj:
    # a direct insert: beta (free plan) is at its member cap, so the API would refuse to invite
    invitation = Invitation.objects.create(
        tenant=fx.tenant,
        email=f"walk-{uuid.uuid4().hex[:10]}@invited.test",
        role=Role.VIEWER,
        token_hash=uuid.uuid4().hex * 2,
        expires_at=timezone.now() + dt.timedelta(days=7),
    )
    return Obj(invitation.pk, (invitation.email,))


def _walk_model(fx: TenantFixture):
    """The name of a registered model of this tenant with a deployable version 1 (unique per tenant)."""
    from django_tenants.utils import schema_context

    from models_registry.models import ModelVersion
    from tests.models_registry.factories import stored_version

    name = f"walk-{fx.slug}"
    with schema_context(fx.tenant.schema_name):
        if not ModelVersion.objects.filter(model__name=name, version=1).exists():
            stored_version(name)
    return name


def _model_object(fx: TenantFixture) -> Obj:
    return Obj(_walk_model(fx), (f"walk-{fx.slug}",))


def _feature_set_object(fx: TenantFixture) -> Obj:
    """A feature set only this tenant has (every tenant has the built-in ``default``)."""
    from django_tenants.utils import schema_context

    from features.services import feature_set_create

    name = f"walk-set-{uuid.uuid4().hex[:8]}"  # no slug in it: a 404 may echo the ref the caller sent
    with schema_context(fx.tenant.schema_name):
        fs, _ = feature_set_create(name=name, spec={"features": [{"indicator": "rsi", "params": {"length": 9}}]})
    return Obj(fs.ref, ())


def _version_object(fx: TenantFixture) -> Obj:
    _walk_model(fx)
    return Obj(1)


def _job_object(fx: TenantFixture) -> Obj:
    from django_tenants.utils import schema_context

    from models_registry.models import TrainingJob

    with schema_context(fx.tenant.schema_name):
        job = TrainingJob.objects.create(model_name=f"walkjob-{fx.slug}", params={"symbol": "WALK"})
    return Obj(str(job.pk), (f"walkjob-{fx.slug}",))


def _backtest_object(fx: TenantFixture) -> Obj:
    from django_tenants.utils import schema_context

    from backtesting.models import BacktestRun

    with schema_context(fx.tenant.schema_name):
        run = BacktestRun.objects.create(strategy="sma_cross", symbol=f"WALK{fx.slug[:4].upper()}", timeframe="1d")
    return Obj(str(run.pk), (run.symbol,))


def _invoice_object(fx: TenantFixture) -> Obj:
    """An open invoice of this tenant (public schema), payable through the walk's local gateway."""
    from decimal import Decimal

    from billing.models import Invoice

    now = timezone.now()
    invoice = Invoice.objects.create(
        number=f"INV-WALK-{uuid.uuid4().hex[:10]}", tenant=fx.tenant, plan=fx.tenant.plan.code, period_start=now,
        period_end=now, total=Decimal("1490000"), due_at=now, lines=[],
    )  # fmt: skip
    return Obj(str(invoice.pk), (invoice.number,))


_decision_ids = itertools.count(1)


def _id_base(fx: TenantFixture) -> int:
    """Ids no other tenant has (each tenant numbers its rows from 1)."""
    return 1_000_000 * (1 + sorted(("alpha", "beta")).index(fx.slug)) if fx.slug in ("alpha", "beta") else 3_000_000


def _decision_object(fx: TenantFixture) -> Obj:
    """A decision with an id no other tenant has (each tenant numbers its decisions from 1)."""
    from django_tenants.utils import schema_context

    from intelligence.models import Decision

    base = _id_base(fx)
    with schema_context(fx.tenant.schema_name):
        d = Decision.objects.create(
            id=base + next(_decision_ids),
            source="api",
            symbol=f"WALK{fx.slug.upper()}",
            timeframe="1d",
            ts=timezone.now(),
            action="HOLD",
            confidence=0.5,
        )
    return Obj(d.id, (f"WALK{fx.slug.upper()}",))


def _walk_flow(fx: TenantFixture) -> str:
    """A flow of this tenant with two inactive versions, naming only agents every plan includes
    (so activating either succeeds on the free plan too)."""
    from django_tenants.utils import schema_context

    from intelligence.models import Flow

    name = f"walkflow-{fx.slug}"
    with schema_context(fx.tenant.schema_name):
        for version in (1, 2):
            Flow.objects.get_or_create(
                name=name, version=version, defaults={"config": {"agents": ["technical", "trend", "risk"]}}
            )
    return name


def _flow_object(fx: TenantFixture) -> Obj:
    return Obj(_walk_flow(fx), (f"walkflow-{fx.slug}",))


def _flow_version_object(fx: TenantFixture) -> Obj:
    _walk_flow(fx)
    return Obj(1)


def _config_version_object(fx: TenantFixture) -> Obj:
    """Version 1 of every environment's configuration of this tenant (dev, staging, prod)."""
    from django_tenants.utils import schema_context

    from configuration.models import ConfigVersion
    from configuration.schema import ENVIRONMENTS, defaults

    with schema_context(fx.tenant.schema_name):
        for env in ENVIRONMENTS:
            if not ConfigVersion.objects.filter(environment=env).exists():
                ConfigVersion.objects.create(environment=env, version=1, values=defaults(), created_by="walk")
    return Obj(1)


def _credential_object(fx: TenantFixture) -> Obj:
    """A credential of this tenant with a unique name (its secret must never appear in a response)."""
    from django_tenants.utils import schema_context

    from compliance.credentials import credential_create

    name = f"walkcred-{fx.slug}-{uuid.uuid4().hex[:8]}"
    with schema_context(fx.tenant.schema_name):
        cred = credential_create(name=name, kind="other", secret=f"walk-secret-{uuid.uuid4().hex}", actor="walk")
    return Obj(cred.pk, (name,))


def _alert_rule_object(fx: TenantFixture) -> Obj:
    """A rule only this tenant has (every tenant has the built-in ones)."""
    from django_tenants.utils import schema_context

    from analytics.models import AlertRule

    name = f"walkrule-{fx.slug}"
    with schema_context(fx.tenant.schema_name):
        AlertRule.objects.get_or_create(
            name=name,
            defaults={"label": f"Walk rule {fx.slug}", "metric": "accuracy", "comparator": "below", "threshold": 0.5,
                      "created_by": "walk"},
        )  # fmt: skip
    return Obj(name, (f"Walk rule {fx.slug}",))


_alert_ids = itertools.count(1)


def _alert_object(fx: TenantFixture) -> Obj:
    """A firing alert with an id no other tenant has (each tenant numbers its alerts from 1)."""
    from django_tenants.utils import schema_context

    from analytics.models import Alert

    base = _id_base(fx)
    n = next(_alert_ids)
    with schema_context(fx.tenant.schema_name):
        alert = Alert.objects.create(  # a rule of its own: one alert fires per rule
            id=base + n, rule=f"walkalert-{fx.slug}-{n}", value=1.0, threshold=0.0,
            message=f"walk alert of {fx.slug}", last_seen_at=timezone.now(),
        )  # fmt: skip
    return Obj(alert.pk, (f"walk alert of {fx.slug}",))


_notify_ids = itertools.count(1)


def _subscription_object(fx: TenantFixture, caller=None) -> Obj:
    """The calling member's own in-app subscription (members manage their own; another member's is
    not there for them), or the tenant's for an API key."""
    from django_tenants.utils import schema_context

    from notifications.models import Subscription

    n = next(_notify_ids)
    person = caller is None or caller.kind == "role"
    user = fx.users[caller.name if caller is not None and person else Role.OWNER]
    with schema_context(fx.tenant.schema_name):
        sub = Subscription.objects.create(
            id=_id_base(fx) + n, name=f"walk subscription of {fx.slug}", user_id=user.pk if person else None,
            events=["model.deployed"], channel="inapp", created_by="walk",
        )  # fmt: skip
    return Obj(sub.pk, (f"walk subscription of {fx.slug}",))


def _webhook_object(fx: TenantFixture) -> Obj:
    from django_tenants.utils import schema_context

    from compliance.credentials import credential_create
    from notifications.models import WebhookEndpoint

    n = next(_notify_ids)
    with schema_context(fx.tenant.schema_name):
        secret = f"whsec_{uuid.uuid4().hex}"
        credential = credential_create(name=f"webhook-walk-{fx.slug}-{n}", kind="webhook", secret=secret, actor="walk")
        hook = WebhookEndpoint.objects.create(
            id=_id_base(fx) + n, name=f"walkhook-{fx.slug}-{n}", url=f"http://127.0.0.1:9/walk-{fx.slug}",
            credential=credential, created_by="walk",
        )  # fmt: skip
    return Obj(hook.pk, (f"walk-{fx.slug}",))


def _delivery_object(fx: TenantFixture) -> Obj:
    """A dead delivery (the dead-letter list's retry needs one)."""
    from django_tenants.utils import schema_context

    from notifications.models import Delivery, Event

    n = next(_notify_ids)
    with schema_context(fx.tenant.schema_name):
        event = Event.objects.create(type="model.deployed", data={"name": f"walk-{fx.slug}", "version": n})
        d = Delivery.objects.create(
            id=_id_base(fx) + n, event=event, channel="inapp", target=f"inapp:{fx.users[Role.OWNER].pk}",
            idempotency_key=f"walk-{fx.slug}-{n}", status=Delivery.Status.DEAD, last_error=f"walk error of {fx.slug}",
        )  # fmt: skip
    return Obj(d.pk, (f"walk error of {fx.slug}",))


_telegram_ids = itertools.count(1)
_telegram_api: list = []  # the walk's sandbox Bot API (see _telegram_on_a_local_api)


def _telegram_bot_object(fx: TenantFixture) -> Obj:
    """A registered Telegram bot with an id no other tenant has, its token in the vault and known
    to the walk's sandbox Bot API (deleting it stops its webhook there)."""
    from django_tenants.utils import schema_context

    from compliance.credentials import credential_create
    from notifications.models import TelegramBot

    base = _id_base(fx)
    n = next(_telegram_ids)
    token, username = f"{700_000_000 + n}:AAwalk{uuid.uuid4().hex}", f"walk_{fx.slug}_{n}_bot"
    if _telegram_api:
        _telegram_api[0].add_bot(token, username)
    with schema_context(fx.tenant.schema_name):
        credential = credential_create(name=f"telegram-bot-walk-{fx.slug}-{n}", kind="telegram", secret=token,
                                       actor="walk")  # fmt: skip
        bot = TelegramBot.objects.create(
            id=base + n, name=f"walk-{fx.slug}-{n}", credential=credential, bot_id=700_000_000 + n, username=username,
            created_by="walk",
        )  # fmt: skip
    return Obj(bot.pk, (username,))


def _telegram_chat_object(fx: TenantFixture) -> Obj:
    from django_tenants.utils import schema_context

    from notifications.models import TelegramChat

    bot = _telegram_bot_object(fx)
    with schema_context(fx.tenant.schema_name):
        chat = TelegramChat.objects.create(id=bot.value, bot_id=bot.value, chat_id=str(4_000_000 + bot.value),
                                           title=f"walk chat of {fx.slug}", created_by="walk")  # fmt: skip
    return Obj(chat.pk, (f"walk chat of {fx.slug}",))


_risk_ids = itertools.count(1)


def _risk_symbol_object(fx: TenantFixture) -> Obj:
    """An instrument with 60 daily bars under a symbol only this tenant has (risk, anomalies,
    forecast and valuation are read by symbol)."""
    from tests.riskcore.helpers import import_bars

    symbol = f"WALK{fx.slug.upper()}{next(_risk_ids)}"
    import_bars(fx, symbol, 60, seed=7)
    return Obj(symbol, (symbol,))


def _batch_object(fx: TenantFixture) -> Obj:
    """A finished risk batch job with an id no other tenant has."""
    from django_tenants.utils import schema_context

    from riskcore.models import BatchJob

    n = next(_risk_ids)
    symbol = f"WALKB{fx.slug.upper()}{n}"
    with schema_context(fx.tenant.schema_name):
        job = BatchJob.objects.create(
            id=_id_base(fx) + n, analysis="risk", symbols=[symbol], status="done", percent=100.0,
            results={symbol: {"error": {"code": "insufficient_bars", "message": "walk"}}}, created_by="walk",
        )  # fmt: skip
    return Obj(job.pk, (symbol,))


def _workflow_object(fx: TenantFixture) -> Obj:
    """A workflow awaiting approval (so approve, reject and cancel reach their 200); uuids are unique."""
    from django_tenants.utils import schema_context

    from tests.orchestration.support import workflow_row

    with schema_context(fx.tenant.schema_name):
        wf = workflow_row(f"walkflow-{fx.slug}")
    return Obj(str(wf.pk), (f"walkflow-{fx.slug}",))


OBJECT_FACTORIES: dict[str, Callable[[TenantFixture], Obj]] = {
    "config_version": _config_version_object,
    "credential_id": _credential_object,
    "decision_id": _decision_object,
    "flow_name": _flow_object,
    "flow_version": _flow_version_object,
    "key_id": _api_key_object,
    "member_id": _member_object,
    "invitation_id": _invitation_object,
    "name": _model_object,
    "ref": _feature_set_object,
    "version": _version_object,
    "job_id": _job_object,
    "backtest_id": _backtest_object,
    "invoice_id": _invoice_object,
    "rule_name": _alert_rule_object,
    "alert_id": _alert_object,
    "subscription_id": _subscription_object,
    "webhook_id": _webhook_object,
    "delivery_id": _delivery_object,
    "bot_id": _telegram_bot_object,
    "chat_id": _telegram_chat_object,
    "workflow_id": _workflow_object,
    "symbol": _risk_symbol_object,
    "batch_id": _batch_object,
}

# Request bodies that reach further than a generated one (a real login reaches the 200).
BODY_HINTS: dict[str, Callable[[TenantFixture], dict]] = {
    "auth_token_create": lambda fx: {"email": fx.users[Role.OWNER].email, "password": PASSWORD, "tenant": fx.slug},
    # the generated role would be the first enum value, "owner", which only owners may grant
    "members_role_update": lambda fx: {"role": Role.ANALYST.value},
    "invitations_create": lambda fx: {"email": f"walk-{uuid.uuid4().hex[:10]}@invited.test", "role": "viewer"},
}


def _object_from_collection(fx: TenantFixture, op: Operation, name: str) -> Obj:
    """Create one through the collection's POST, else take the first item its GET lists."""
    collection = op.path.split("{" + name + "}")[0]
    item = None
    for method in ("POST", "GET"):
        other = OPS_BY_KEY.get((collection, method))
        if other is None or item is not None:
            continue
        r = _send(fx.client(), other, _path_values(fx, other), _generated_body(other))
        if r.status_code in (200, 201):
            data = r.json()
            items = data.get("results", [data]) if isinstance(data, dict) else data
            item = items[0] if items else None
    if not isinstance(item, dict) or (name not in item and "id" not in item):
        pytest.fail(f"{op}: no way to get a '{name}' in tenant {fx.slug}; add a factory to OBJECT_FACTORIES")
    return Obj(item.get(name, item.get("id")), tuple(v for v in item.values() if isinstance(v, str) and len(v) >= 6))


# objects that belong to a member, not the tenant: their factory makes the calling member's own
CALLER_OWNED = {"subscription_id"}


def _path_values(fx: TenantFixture, op: Operation, caller=None) -> dict[str, Obj]:
    values = {}
    for p in op.path_params:
        name = p["name"]
        if name in OBJECT_FACTORIES:
            factory = OBJECT_FACTORIES[name]
            values[name] = factory(fx, caller) if name in CALLER_OWNED else factory(fx)
        elif _is_object_param(p):
            values[name] = _object_from_collection(fx, op, name)
        else:
            values[name] = Obj(_example(p.get("schema", {})))
    return values


# --- minimal valid instances of a schema -------------------------------------------------------


def _generated_body(op: Operation):
    body = op.spec.get("requestBody")
    if not body:
        return None
    content = body.get("content", {})
    assert "application/json" in content, f"{op}: only JSON request bodies are walked, got {sorted(content)}"
    pointer = f"/paths/{_escape(op.path)}/{op.method.lower()}/requestBody/content/application~1json/schema"
    instance = _example(content["application/json"]["schema"])
    errors = _errors(pointer, instance, strict=False)
    assert not errors, f"{op}: the generated body {instance} is invalid: {errors}; add it to BODY_HINTS"
    return instance


def _bodies(op: Operation, fx: TenantFixture) -> list:
    bodies = [_generated_body(op)]
    if op.id in BODY_HINTS:
        bodies.append(BODY_HINTS[op.id](fx))
    return bodies


# --- validation against the document ------------------------------------------------------------


def _to_json_schema(node, strict: bool):
    """OpenAPI 3.0 schema objects -> JSON Schema 2020-12. ``strict`` forbids undocumented fields."""
    if isinstance(node, list):
        return [_to_json_schema(n, strict) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v, strict) for k, v in node.items()}
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(exclusive) is True:
            out[exclusive] = out.pop(bound)
        elif out.get(exclusive) is False:
            del out[exclusive]
    if strict and "properties" in out and isinstance(out["properties"], dict) and "additionalProperties" not in out:
        out["unevaluatedProperties"] = False
    if out.get("nullable") is True:
        del out["nullable"]
        out = {"anyOf": [out, {"type": "null"}]}
    elif out.get("nullable") is False:
        del out["nullable"]
    return out


FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value) -> bool:
    if not isinstance(value, str):
        return True
    return "T" in value and dt.datetime.fromisoformat(value).tzinfo is not None


def _shorten(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " ... " + text[-limit // 2 :]


@cache
def _registry(strict: bool) -> Registry:
    resource = Resource.from_contents(_to_json_schema(DOC, strict), default_specification=DRAFT202012)
    return Registry().with_resource(f"urn:walk:openapi:{strict}", resource)


def _errors(pointer: str, instance, strict: bool = True) -> list[str]:
    validator = Draft202012Validator(
        {"$ref": f"urn:walk:openapi:{strict}#{pointer}"}, registry=_registry(strict), format_checker=FORMATS
    )
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {_shorten(e.message)}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    ]


def _assert_conforms(op: Operation, r) -> None:
    status = r.status_code
    declared = op.spec.get("responses", {})
    key = next((k for k in (str(status), f"{status // 100}XX", "default") if k in declared), None)
    assert key, f"{op} answered {status}, which the document does not list ({sorted(declared)}): {r.content[:300]!r}"
    content = _deref(declared[key]).get("content")
    if not content:
        assert not r.content, f"{op} {status}: the document declares no body, got {r.content[:300]!r}"
        return
    media = r.get("Content-Type", "").split(";")[0].strip()
    assert media in content, f"{op} {status}: Content-Type {media!r}, the document declares {sorted(content)}"
    if media == "application/json" and "schema" in content[media]:
        pointer = f"/paths/{_escape(op.path)}/{op.method.lower()}/responses/{key}/content/{_escape(media)}/schema"
        errors = _errors(pointer, r.json())
        assert not errors, f"{op} {status} does not match its documented schema:\n  " + "\n  ".join(errors)


# --- requests ----------------------------------------------------------------------------------

_addresses = itertools.count(1)


def _send(client: APIClient, op: Operation, values: dict | None = None, body=None, **extra):
    """One request. Each gets its own client address, so per-IP throttles never blur the walk."""
    n = next(_addresses)
    extra.setdefault("REMOTE_ADDR", f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}")
    data = {} if body is None else {"data": json.dumps(body), "content_type": "application/json"}
    return client.generic(op.method, op.url(values or {}), **data, **extra)


def _assert_no_server_error(op: Operation, who: str, r) -> None:
    assert r.status_code < 500, f"{op} as {who}: {r.status_code} {r.content[:500]!r}"


def _snapshot(fx: TenantFixture, op: Operation, values: dict):
    """What a write could change, as the owning tenant sees it through the GET on the same path:
    the object itself, or for a collection the ids it lists (the calling key's own
    ``last_used_at`` changes with every request, so whole listings are not comparable)."""
    get = OPS_BY_KEY.get((op.path, "GET"))
    if op.method in SAFE_METHODS or get is None:
        return None
    r = _send(fx.client(), get, values)
    data = r.json()
    items = data.get("results") if isinstance(data, dict) else data
    if isinstance(items, list) and all(isinstance(i, dict) and "id" in i for i in items):
        return r.status_code, sorted(i["id"] for i in items)
    return r.status_code, data


def _markers(fx: TenantFixture, values: dict) -> list[str]:
    own = [fx.tenant.slug, fx.tenant.schema_name, fx.tenant.name, fx.users[Role.OWNER].email]
    return own + [m for v in values.values() for m in getattr(v, "markers", ())]


def _assert_not_found_without_leak(op: Operation, who: str, r, victim: TenantFixture, values: dict) -> None:
    _assert_no_server_error(op, who, r)
    assert r.status_code == 404 and error_code(r) == "not_found", (
        f"{op} as {who}: expected 404 not_found, got {r.status_code} {r.content[:300]!r}"
    )
    body = r.content.decode()
    leaked = [m for m in _markers(victim, values) if m and m in body]
    assert not leaked, f"{op} as {who}: the 404 shows {victim.slug}'s data {leaked}"


@pytest.fixture
def tenants(alpha, beta) -> dict[str, TenantFixture]:
    return {"alpha": alpha, "beta": beta}


@pytest.fixture(scope="module")
def _gateway():
    from tests.billing.gateway import FakeMidtrans

    fake = FakeMidtrans()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def _payments_on_a_local_gateway(settings, _gateway):
    """Paying an invoice reaches a local server speaking Midtrans' protocol (the real one is not reachable)."""
    settings.MIDTRANS_SERVER_KEY = _gateway.server_key
    settings.MIDTRANS_SNAP_URL = settings.MIDTRANS_API_URL = _gateway.url


@pytest.fixture(scope="module")
def _telegram_sandbox():
    from notifications.sandbox import TelegramSandbox

    box = TelegramSandbox().start()
    _telegram_api.append(box)
    yield box
    _telegram_api.clear()
    box.stop()


@pytest.fixture(autouse=True)
def _telegram_on_a_local_api(settings, _telegram_sandbox):
    """Registering a bot, adding a chat and deleting a bot ask Telegram: here a local server that
    speaks its Bot API (notifications.sandbox; the real one is not reachable)."""
    settings.TELEGRAM_API_BASE = _telegram_sandbox.url


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Each login attempt costs ~0.5 s of PBKDF2 (also for unknown users, to equalise timing); the
    fuzzer makes dozens. A fast hasher first; PBKDF2 stays to verify the fixtures' passwords."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


# --- coverage guards ---------------------------------------------------------------------------


def test_served_document_is_the_walked_document(client):
    r = client.get(SCHEMA_URL)
    assert r.status_code == 200, r.content[:300]
    assert json.loads(r.content) == DOC


def test_walk_has_tenant_and_object_operations():
    assert TENANT_OPS and OBJECT_OPS, "the walk found nothing to walk; is the schema empty?"


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_tenant_only_routes_are_guarded_by_tenant_access(op):
    # Given an operation routed only once a tenant is resolved, then TenantAccess must guard it:
    # otherwise none of the tenant, role and scope rules apply to it.
    assert op.guarded or op.public_route, (
        f"{op} ({type(op.view).__name__}) is a tenant route without TenantAccess in its permission_classes"
    )


# Operations that read-only callers (viewer role, read scope) may call with an unsafe method, each
# with the reason. Empty: today every write needs at least analyst / a write scope.
READ_ONLY_MAY_WRITE: dict[str, str] = {
    "data_validate": "checks a file and writes nothing",
    "features_calculate": "computes features and writes nothing",
    "models_predict": "predicts and writes nothing",
    "ws_tickets_create": "issues a one-use 60-second handshake ticket and writes no data",
    "inference_create": "predicts and writes nothing",
    "notifications_telegram_link": "a member's own one-time link code (10 minutes in Redis) and its audit record",
    # a member's own notification settings: their in-app centre, own address, a chat linked to them
    # (tenant-wide subscriptions, webhooks and other targets need an admin: the service checks)
    "notifications_subscriptions_create": "a member's own subscription",
    "notifications_subscriptions_update": "a member's own subscription",
    "notifications_subscriptions_delete": "a member's own subscription",
    "notifications_subscriptions_test": "a test message to the member's own subscription's target",
    "notifications_inbox_read": "marks the member's own notifications read",
}


@pytest.mark.parametrize("op", [op for op in TENANT_OPS if op.method not in SAFE_METHODS], ids=str)
def test_read_only_callers_cannot_write(op):
    # The walk below proves enforcement matches each view's declared access; this pins the one
    # policy a declaration must not drift from: a viewer or a read-only key never writes.
    need = op.access
    weak = [str(c) for c in (Caller("role", Role.VIEWER), Caller("scope", Scope.READ)) if c.denial(need) is None]
    assert not weak or op.id in READ_ONLY_MAY_WRITE, (
        f"{op} ({op.method}) declares {need}, which lets {weak} write; raise it or add it to READ_ONLY_MAY_WRITE"
    )


# --- 1 + 3 + 4: every tenant operation as every caller of both tenants -------------------------


# 403s that are not about who is calling but about what the tenant's plan includes (beta is on
# the free plan): the role and scope were enough, the product feature is not in the plan
PLAN_GATES = {"agent_not_in_plan"}


@pytest.mark.parametrize("caller", CALLERS, ids=str)
@pytest.mark.parametrize("tenant", ["alpha", "beta"])
@pytest.mark.parametrize("op", TENANT_OPS, ids=str)
def test_tenant_operation_as_caller(op, tenant, caller, tenants):
    # Given the caller's own tenant's objects in the path and a minimal valid body
    fx = tenants[tenant]
    values = _path_values(fx, op, caller)
    before = _snapshot(fx, op, values)
    # When the caller sends the request
    body = BODY_HINTS[op.id](fx) if op.id in BODY_HINTS else _generated_body(op)
    r = _send(caller.client(fx), op, values, body)
    # Then: never a 5xx; 403 exactly when the view's declared access is above the caller
    who = f"{caller}@{tenant}"
    _assert_no_server_error(op, who, r)
    need = op.access
    denial = caller.denial(need)
    if denial:
        assert r.status_code == 403 and error_code(r) == denial, (
            f"{op} needs {need}; {who} must get 403 {denial}, got {r.status_code} {r.content[:300]!r}"
        )
        assert _snapshot(fx, op, values) == before, f"{op}: a denied {who} changed the object"
    else:
        plan_gate = r.status_code == 403 and error_code(r) in PLAN_GATES and tenant == "beta"
        assert r.status_code not in (401, 403) or plan_gate, (
            f"{op} needs {need}; {who} is allowed but got {r.status_code} {r.content[:300]!r}"
        )
        if op.path_params and all(_is_object_param(p) for p in op.path_params):
            # (another 404 code is a state of the object, e.g. a model with no production version yet)
            assert r.status_code != 404 or error_code(r) != "not_found", (
                f"{op}: {who} cannot find its own tenant's object: {r.content[:300]!r}"
            )
    # and the response is what the document says
    _assert_conforms(op, r)


# --- 2: isolation ------------------------------------------------------------------------------

AUTHS = {"api-key": lambda fx: fx.client(), "owner-jwt": lambda fx: fx.client(role=Role.OWNER)}
DIRECTIONS = [("alpha", "beta"), ("beta", "alpha")]


@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize(("attacker", "victim"), DIRECTIONS, ids=lambda s: s)
@pytest.mark.parametrize("op", OBJECT_OPS, ids=str)
def test_other_tenants_object_is_404(op, attacker, victim, auth, tenants):
    # Given objects of the victim tenant, and the attacker's most powerful credentials
    atk, vic = tenants[attacker], tenants[victim]
    values = _path_values(vic, op)
    before = _snapshot(vic, op, values)
    # When the attacker names the victim's object
    r = _send(AUTHS[auth](atk), op, values, _generated_body(op))
    # Then 404, nothing of the victim's in the body, and the victim's object unchanged
    _assert_not_found_without_leak(op, f"{auth}@{attacker}", r, vic, values)
    assert _snapshot(vic, op, values) == before, f"{op}: {attacker} changed {victim}'s object"
    _assert_conforms(op, r)


@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize(("owner", "host"), DIRECTIONS, ids=lambda s: s)
@pytest.mark.parametrize("op", TENANT_OPS, ids=str)
def test_credentials_on_other_tenants_host_are_404(op, owner, host, auth, tenants):
    # Given the caller's own objects, but the request goes to the other tenant's host
    fx, other = tenants[owner], tenants[host]
    values = _path_values(fx, op)
    r = _send(AUTHS[auth](fx), op, values, _generated_body(op), HTTP_HOST=f"{other.slug}.localhost")
    # Then 404, never the other tenant's data
    _assert_not_found_without_leak(op, f"{auth}@{owner} on {host}'s host", r, other, {})
    _assert_conforms(op, r)


def _beta_owner_claiming_alpha(tenants) -> APIClient:
    from rest_framework_simplejwt.tokens import RefreshToken

    token = RefreshToken.for_user(tenants["beta"].users[Role.OWNER]).access_token
    token["tenant_id"] = tenants["alpha"].tenant.pk
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return c


OUTSIDERS = {
    # who: (client, extra request headers, expected status, expected code)
    "anonymous@main-host": (lambda t: APIClient(), {}, 404, "not_found"),
    "anonymous@alpha-host": (lambda t: APIClient(), {"HTTP_HOST": "alpha.localhost"}, 401, "not_authenticated"),
    "beta-owner-jwt-claiming-alpha": (_beta_owner_claiming_alpha, {}, 404, "not_found"),
}


@pytest.mark.parametrize("who", OUTSIDERS)
@pytest.mark.parametrize("op", TENANT_OPS, ids=str)
def test_tenant_operation_for_outsiders(op, who, tenants):
    # Given alpha's objects, and a caller who is not an alpha member
    make_client, extra, status, code = OUTSIDERS[who]
    alpha = tenants["alpha"]
    values = _path_values(alpha, op)
    before = _snapshot(alpha, op, values)
    r = _send(make_client(tenants), op, values, _generated_body(op), **extra)
    # Then the documented refusal, no alpha data, nothing changed
    _assert_no_server_error(op, who, r)
    assert r.status_code == status and error_code(r) == code, f"{op} as {who}: {r.status_code} {r.content[:300]!r}"
    if status == 404:
        _assert_not_found_without_leak(op, who, r, alpha, values)
    assert _snapshot(alpha, op, values) == before, f"{op}: {who} changed alpha's object"
    _assert_conforms(op, r)


# --- 1 + 4 for operations without a tenant (login), and every other public route ----------------

PUBLIC_CALLERS = {
    "anonymous": lambda t: (t["alpha"], APIClient(), {}),
    "alpha-api-key": lambda t: (t["alpha"], t["alpha"].client(), {}),
    "beta-api-key": lambda t: (t["beta"], t["beta"].client(), {}),
    "alpha-viewer-jwt": lambda t: (t["alpha"], t["alpha"].client(role=Role.VIEWER), {}),
    "anonymous@beta-host": lambda t: (t["beta"], APIClient(), {"HTTP_HOST": "beta.localhost"}),
}


@pytest.mark.parametrize("who", PUBLIC_CALLERS)
@pytest.mark.parametrize("op", PUBLIC_OPS, ids=str)
def test_public_operation(op, who, tenants):
    fx, client, extra = PUBLIC_CALLERS[who](tenants)
    for body in _bodies(op, fx):
        r = _send(client, op, _path_values(fx, op), body, **extra)
        _assert_no_server_error(op, who, r)
        _assert_conforms(op, r)
        if op.id in BODY_HINTS and body == BODY_HINTS[op.id](fx):
            assert 200 <= r.status_code < 300, f"{op} as {who} with {body}: {r.status_code} {r.content[:300]!r}"


def _plain_routes(patterns, prefix: str = "") -> list[str]:
    """Every route of a URLconf without parameters (what can be requested as is)."""
    routes = []
    for p in patterns:
        piece = str(p.pattern)
        if "<" in piece or "(" in piece:  # a converter or regex group: needs values
            continue
        piece = piece.removeprefix("^").removesuffix("$").replace("\\", "")
        if isinstance(p, URLResolver):
            routes += _plain_routes(p.url_patterns, prefix + piece)
        elif isinstance(p, URLPattern):
            routes.append("/" + prefix + piece)
    return sorted(set(routes))


PUBLIC_ROUTES = _plain_routes(get_resolver(PUBLIC_URLCONF).url_patterns)


@pytest.mark.parametrize("who", ["anonymous", "alpha-api-key", "anonymous@alpha-host"])
@pytest.mark.parametrize("path", PUBLIC_ROUTES)
def test_public_route_never_5xx(path, who, alpha):
    client = alpha.client() if who == "alpha-api-key" else APIClient()
    host = {"HTTP_HOST": "alpha.localhost"} if who.endswith("alpha-host") else {}
    r = client.get(path, REMOTE_ADDR="10.255.0.1", **host)
    if r.status_code == 503 and path in DEGRADABLE:
        assert DEGRADABLE[path](r), f"GET {path} as {who}: an undesigned 503 {r.content[:300]!r}"
    else:
        assert r.status_code < 500, f"GET {path} as {who}: {r.status_code} {r.content[:300]!r}"


# --- a schemathesis property run on top --------------------------------------------------------


@pytest.fixture
def served_schema(alpha):
    """The served document, loaded by schemathesis and called in-process through the WSGI app.

    Django's request signals close the DB connection after each request; the test client
    disconnects them, and so must we, or the first request ends the test's transaction."""
    import schemathesis

    from config.wsgi import application

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi(SCHEMA_URL, application)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _fuzz(op, served_schema, alpha, *, checks, examples: int, negative: bool = False) -> None:
    """``examples`` generated requests to ``op`` as alpha's owner key, each response validated by
    ``checks``. Positive: valid by the document (explicit examples, generated, shrunk on failure);
    negative: each breaks the document somewhere (generated only)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode

    operation = served_schema[op.path][op.method.lower()]
    headers = {"Authorization": f"Api-Key {alpha.key}"}
    mode = GenerationMode.NEGATIVE if negative else GenerationMode.POSITIVE

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate] if negative else [Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        if op.method not in SAFE_METHODS:
            # writes aim at objects made here, so the session's keys stay usable within the test
            for p in op.path_params:
                if p["name"] in OBJECT_FACTORIES:
                    case.path_parameters[p["name"]] = OBJECT_FACTORIES[p["name"]](alpha).value
        response = case.call(headers=headers)
        case.validate_response(response, checks=checks, headers=headers)

    run()


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_fuzzed_requests_conform(op, served_schema, alpha):
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    _fuzz(op, served_schema, alpha, checks=checks, examples=PROPERTY_EXAMPLES)


# operations whose requests have nothing to violate (no parameters, no body): no negative case exists
def _negatable(op) -> bool:
    spec = DOC["paths"][op.path][op.method.lower()]
    return bool(spec.get("parameters") or DOC["paths"][op.path].get("parameters") or spec.get("requestBody"))


NEGATIVE_EXAMPLES = int(os.environ.get("WALK_NEGATIVE_EXAMPLES", "6"))


@pytest.mark.parametrize("op", [op for op in OPERATIONS if _negatable(op)], ids=str)
def test_invalid_requests_are_rejected(op, served_schema, alpha):
    """Negative fuzzing: parameters and bodies that break the documented schema (wrong types,
    out-of-range values, missing required fields) get a 4xx that conforms to the document,
    never a 2xx that took them and never a 5xx."""
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import negative_data_rejection, response_schema_conformance

    checks = [not_a_server_error, negative_data_rejection, response_schema_conformance]
    try:
        _fuzz(op, served_schema, alpha, checks=checks, examples=NEGATIVE_EXAMPLES, negative=True)
    except Unsatisfiable:  # nothing to violate: only free-form path strings, no query, no body
        spec = DOC["paths"][op.path][op.method.lower()]
        params = spec.get("parameters", []) + DOC["paths"][op.path].get("parameters", [])
        assert not spec.get("requestBody") and all(_deref(p)["in"] == "path" for p in params), op
