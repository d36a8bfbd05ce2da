from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models, transaction
from django_tenants.models import DomainMixin, TenantMixin


class Plan(models.Model):
    """A subscription tier. ``limits`` maps a metered name to its cap (None = unlimited)."""

    code = models.SlugField(unique=True)  # free / pro / enterprise
    name = models.CharField(max_length=64)
    monthly_price_cents = models.PositiveIntegerField(default=0)  # list price shown in USD cents
    limits = models.JSONField(default=dict)
    # what is billed (billing/): the monthly price in ``currency`` and, per metered unit, what the
    # month includes and the price of each unit beyond it: {"prediction": {"included": n, "unit_price": "2"}}
    price = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, default="IDR")
    overage = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.name


class Tenant(TenantMixin):
    """A trading firm or team; owns one PostgreSQL schema."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"
        TEMPLATE = "template"  # the migrated schema new tenants are cloned from

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=120)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="tenants")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    auto_create_schema = False  # tenants.services.tenant_provision creates it (clone of a template)
    auto_drop_schema = True

    def __str__(self) -> str:
        return self.slug

    def _drop_schema(self, force_drop=False):
        """As the owner: the app role owns no schema (tenants/db/roles.py). In this transaction, or,
        with the owner on its own connection, once the tenant's deletion has committed."""
        from tenants.db import roles

        if roles.owner_connection_separate():
            if self.auto_drop_schema or force_drop:
                schema = self.schema_name
                transaction.on_commit(lambda: roles.schema_drop(schema))
            return
        with roles.owner_atomic():
            super()._drop_schema(force_drop)


class Domain(DomainMixin):
    pass


class Role(models.TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.ANALYST: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class Scope(models.TextChoices):
    READ = "read"
    TRADE = "trade"  # request decisions
    ADMIN = "admin"  # manage the tenant's resources


class ApiKey(models.Model):
    """An API key. Only ``prefix`` (lookup) and ``hashed_key`` (sha256 of the whole key) are kept."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64)
    scopes = ArrayField(models.CharField(max_length=16, choices=Scope.choices), default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class KillSwitch(models.Model):
    """One engagement of a kill switch (MiFID II RTS 6 Art. 12): a tenant's (``tenant`` set) or the
    whole platform's (``tenant`` null). While ``lifted_at`` is empty, no new decision is made or
    published for it. Engaged by the tenant's admins or by staff; lifted only by staff."""

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="kill_switches")
    reason = models.CharField(max_length=300)
    engaged_by = models.CharField(max_length=254)
    engaged_at = models.DateTimeField(auto_now_add=True)
    lifted_by = models.CharField(max_length=254, blank=True)
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-engaged_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"], condition=models.Q(lifted_at=None), name="one_engaged_kill_switch_per_tenant",
                nulls_distinct=False,
            )
        ]  # fmt: skip

    def __str__(self) -> str:
        who = self.tenant.slug if self.tenant_id else "platform"
        return f"kill switch {who}: {'engaged' if self.active else 'lifted'}"

    @property
    def active(self) -> bool:
        return self.lifted_at is None
