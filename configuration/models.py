"""A tenant's configuration, per environment, as an append-only list of versions: the current
configuration of an environment is its highest version. Editing, rolling back and promoting
each add a version (a rollback copies an older one forward), so the history is the audit of
what ran when, and nothing is ever rewritten."""

from django.db import models


class Environment(models.TextChoices):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class ConfigVersion(models.Model):
    class Source(models.TextChoices):
        EDIT = "edit"
        ROLLBACK = "rollback"
        PROMOTE = "promote"
        FLOW = "flow"  # a flow activated (POST /flows/.../activate/)

    environment = models.CharField(max_length=8, choices=Environment.choices)
    version = models.PositiveIntegerField()
    values = models.JSONField()  # the complete, validated document
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.EDIT)
    based_on = models.CharField(max_length=32, blank=True)  # "prod@3" (rollback), "staging@5" (promote)
    comment = models.CharField(max_length=300, blank=True)
    created_by = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["environment", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "version"], name="config_version_unique"),
        ]

    def __str__(self) -> str:
        return self.ref

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise RuntimeError("configuration versions never change; add a version")
        super().save(*args, **kwargs)

    @property
    def ref(self) -> str:
        return f"{self.environment}@{self.version}"
