import json
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from tenants import resolution
from tenants.models import Membership, Role, Tenant
from tenants.services import ALL_SCOPES, _api_key_insert, tenant_provision

DEMO_SLUG = "demo"
DEMO_EMAIL = "demo@example.com"
ADMIN_EMAIL = "admin@example.com"


def _policy_password(kept: str | None, email: str) -> str:
    """The password kept in demo.json if it meets AUTH_PASSWORD_VALIDATORS, else a new random one
    (16 URL-safe characters) that does."""
    for candidate in [kept] + [secrets.token_urlsafe(12) for _ in range(10)]:
        if not candidate:
            continue
        try:
            validate_password(candidate, get_user_model()(email=email))
        except ValidationError:
            continue
        return candidate
    raise RuntimeError("could not draw a password that meets AUTH_PASSWORD_VALIDATORS")


class Command(BaseCommand):
    help = (
        "Create (idempotently) the `demo` tenant owned by demo@example.com and write the credentials "
        "to .data/demo.json (api_key, email, password, base_url, ws_url, feed_url, admin_email, admin_password for "
        "Django admin). With --print, only print them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--print", action="store_true", help="Print URLs and credentials and exit.")

    def handle(self, *args, **opts):
        path = settings.DATA_DIR / "demo.json"
        base_url = f"http://127.0.0.1:{os.environ.get('HTTP_PORT', '8000')}"
        ws_url = f"ws://127.0.0.1:{os.environ.get('WS_PORT', '8001')}"
        feed_url = f"ws://127.0.0.1:{settings.WS_FEED_PORT}/ws/decisions/"
        if opts["print"]:
            return self._print(json.loads(path.read_text()))
        current = json.loads(path.read_text()) if path.exists() else {}
        User = get_user_model()
        tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
        password = _policy_password(current.get("password"), DEMO_EMAIL)
        if tenant is None:
            tenant, key = tenant_provision(
                slug=DEMO_SLUG, plan="pro", name="Demo Trading", owner_email=DEMO_EMAIL, owner_password=password
            )
        else:
            key = current.get("api_key")
            if not key or (info := resolution.api_key_resolve(key)) is None or info.tenant_id != tenant.pk:
                owner = User.objects.filter(email=DEMO_EMAIL).first()
                _, key = _api_key_insert(tenant=tenant, name="demo key", scopes=ALL_SCOPES, created_by=owner)
        owner, _ = User.objects.get_or_create(email=DEMO_EMAIL)
        if not owner.check_password(password):
            owner.set_password(password)
            owner.save(update_fields=["password"])
        Membership.objects.get_or_create(user=owner, tenant=tenant, defaults={"role": Role.OWNER})
        # platform staff for Django admin (tenants, plans, users, keys); not a member of any tenant
        admin_password = _policy_password(current.get("admin_password"), ADMIN_EMAIL)
        staff = User.objects.filter(email=ADMIN_EMAIL).first() or User.objects.create_superuser(
            email=ADMIN_EMAIL, password=admin_password
        )
        if not staff.check_password(admin_password):
            staff.set_password(admin_password)
            staff.save(update_fields=["password"])
        data = {
            "tenant": DEMO_SLUG,
            "api_key": key,
            "email": DEMO_EMAIL,
            "password": password,
            "base_url": base_url,
            "ws_url": ws_url,
            "feed_url": feed_url,
            "admin_email": ADMIN_EMAIL,
            "admin_password": admin_password,
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        from marketdata.samples import sample_data_load

        loaded = sample_data_load(tenant)
        if loaded:
            self.stdout.write("sample market data: " + ", ".join(loaded))
        from models_registry.samples import demo_model_ensure

        def echo(percent, message):
            self.stderr.write(
                f"\r  training the demo model [{'#' * (percent // 5):<20}] {percent:3d}% {message[:50]:<50}", ending=""
            )

        outcome = demo_model_ensure(tenant, echo=echo)
        self.stderr.write("")  # end the progress line
        self.stdout.write(outcome)
        from models_registry.samples import demo_rl_ensure

        def echo_rl(percent, message):
            self.stderr.write(
                f"\r  training the demo RL policy [{'#' * (percent // 5):<20}] {percent:3d}% {message[:50]:<50}",
                ending="",
            )

        outcome = demo_rl_ensure(tenant, echo=echo_rl)
        self.stderr.write("")
        self.stdout.write(outcome)
        from django_tenants.utils import schema_context

        from intelligence.models import Flow
        from intelligence.services import flow_create
        from marketdata.services import live_replay_set

        with schema_context(tenant.schema_name):
            if not Flow.objects.filter(name="demo").exists():
                # the default flow with the adaptive threshold on: its moves (ml.threshold.adjusted) show live
                flow_create(tenant=tenant, name="demo", config={"adaptive": {"enabled": True}}, actor="system:demo")
        speed = float(os.environ.get("REPLAY_SPEED") or 5)
        with schema_context(tenant.schema_name):  # `replay_market --all` (make run) continues it live
            live_replay_set(symbol="BTC-USD", timeframe="1d", speed=speed, actor="system:demo")
        self.stdout.write(f"live replay: BTC-USD 1d at {speed:g} bars/s")
        from billing.revenue import sample_history_seed
        from billing.services import subscription_ensure

        subscription_ensure(tenant=tenant)
        if added := sample_history_seed():
            self.stdout.write(f"sample subscription history for the staff revenue page: {added} events")
        self.stdout.write(f"demo tenant ready; credentials in {path}")

    def _print(self, d):
        w = self.stdout.write
        w("")
        w("  AI Trading Intelligence is starting (Ctrl-C stops everything)")
        w(f"  Dashboard    {d['base_url']}/   (log in as the demo owner below, or sign up a new tenant)")
        w(f"  API          {d['base_url']}/api/v1/   (Authorization: Api-Key <api_key>)")
        w(f"  Swagger UI   {d['base_url']}/api/docs/")
        w(f"  Health       {d['base_url']}/health/ready")
        w(f"  Admin        {d['base_url']}/admin/   ({d.get('admin_email', '')} / {d.get('admin_password', '')})")
        w(f"  Revenue      {d['base_url']}/app/staff/revenue/   (staff: the admin login above)")
        w(f"  Decisions    {d.get('feed_url', '')}?api_key=<api_key>   (live feed; REST: /api/v1/decisions/)")
        w(f"  WebSockets   {d['ws_url']}/ws/training/   (training progress)")
        if settings.TELEGRAM_API_BASE.startswith(("http://127.0.0.1:", "http://localhost:")):
            w(f"  Telegram     {settings.TELEGRAM_API_BASE}/   (sandbox Bot API: the demo bot's chat gets confident "
              "decisions; send /status as the user)")  # fmt: skip
        w(f"  Demo login   {d['email']} / {d['password']}   (tenant: {d['tenant']})")
        w(f"  API key      {d['api_key']}")
        w(f"  Try:  curl -H 'Authorization: Api-Key {d['api_key']}' {d['base_url']}/api/v1/tenant/")
        w("  (all of this is also in .data/demo.json)")
        w("")
