from django.contrib.postgres.fields import ArrayField
from django.db import models


class AuditRecord(models.Model):
    """Append-only, per tenant. A database trigger (migration 0002) rejects UPDATE and DELETE;
    the hash chain over records arrives with the compliance issue."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=120)  # "user:<id>:<email>", "apikey:<prefix>", "system"
    action = models.CharField(max_length=80, db_index=True)  # "<entity>.<verb>", e.g. "api_key.revoked"
    object_type = models.CharField(max_length=80, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict)

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise RuntimeError("audit records are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("audit records are append-only")


class DataKey(models.Model):
    """A tenant's data-encryption key, stored only wrapped (AES-256-GCM) by the master key."""

    key_id = models.CharField(max_length=32, unique=True)
    master_key_id = models.CharField(max_length=32)
    wrapped = models.BinaryField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # set when ``rotate_master_key`` re-wrapped it under a newer master key than it was created under
    rewrapped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.key_id} ({'active' if self.active else 'retired'})"


class ChainBatch(models.Model):
    """A run of records sealed into one of the tenant's hash chains (``compliance.chain``): their
    ids and 8-byte digests in id order, and ``hash = sha256(prev_hash + digests)``. Append-only (a
    trigger); one writer per tenant and chain (an advisory lock) appends batches, so inserting
    records never waits on the chain."""

    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField(unique=True)
    ids = ArrayField(models.BigIntegerField())
    digests = models.BinaryField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ("last_id",)


class AuditBatch(ChainBatch):
    """Audit records sealed into the tenant's audit chain."""

    class Meta(ChainBatch.Meta):
        pass

    def __str__(self) -> str:
        return f"audit batch #{self.first_id}-{self.last_id} {self.hash[:12]}"


class Credential(models.Model):
    """A tenant's secret for an outside service (exchange, broker, Telegram bot, webhook, SMTP).

    Write-only: the secret is stored only as a vault blob bound to this row (``compliance.vault``,
    context ``credential:<id>:<name>``), and read back only at its point of use through
    ``compliance.credentials.credential_use``, which audits each use. Lists, the API and the admin
    show ``hint`` (the last four characters of a long secret) and the non-secret ``metadata``."""

    class Kind(models.TextChoices):
        EXCHANGE = "exchange"
        BROKER = "broker"
        TELEGRAM = "telegram"
        WEBHOOK = "webhook"
        SMTP = "smtp"
        OTHER = "other"

    name = models.SlugField(max_length=64, unique=True)  # immutable: part of the ciphertext's context
    kind = models.CharField(max_length=16, choices=Kind.choices)
    ciphertext = models.BinaryField(editable=False)
    hint = models.CharField(max_length=8, blank=True, editable=False)
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=254, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Credential {self.pk} {self.name} v{self.version}>"
