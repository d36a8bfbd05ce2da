"""Feature sets of one tenant (tenant schema): named, versioned, immutable once a model uses them."""

from django.db import models


class FeatureSet(models.Model):
    """One version of a named feature spec. A new spec for the same name is a new version; a version
    never changes (``locked_at`` records when a model first used it, after which it can't be deleted)."""

    name = models.SlugField(max_length=64)
    version = models.PositiveIntegerField()
    description = models.CharField(max_length=500, blank=True)
    spec = models.JSONField()
    spec_hash = models.CharField(max_length=64)
    columns = models.JSONField()  # ordered output column names
    warmup = models.PositiveIntegerField()  # bars before the first complete feature vector (base timeframe)
    base_timeframe = models.CharField(max_length=4, blank=True)  # required when a feature names its own
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    locked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="uniq_feature_set_version")]
        ordering = ["name", "-version"]

    def __str__(self) -> str:
        return self.ref

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"
