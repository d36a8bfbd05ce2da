from __future__ import annotations

from dataclasses import dataclass

from api.errors import ApplicationError, NotFound

from . import schema
from .models import ConfigVersion


@dataclass(frozen=True)
class Current:
    environment: str
    version: int  # 0: nothing stored yet (the defaults)
    values: dict
    row: ConfigVersion | None

    @property
    def ref(self) -> str:
        return f"{self.environment}@{self.version}"


def environment_check(environment: str) -> str:
    if environment not in schema.ENVIRONMENTS:
        raise ApplicationError(
            "unknown_environment",
            f"There is no environment '{environment[:20]}'; use one of {', '.join(schema.ENVIRONMENTS)}.",
            {"environments": list(schema.ENVIRONMENTS)},
            status=404,
        )
    return environment


def config_current(environment: str) -> Current:
    """The environment's configuration in force: its newest version, or the defaults (version 0)."""
    environment_check(environment)
    row = ConfigVersion.objects.filter(environment=environment).order_by("-version").first()
    if row is None:
        return Current(environment, 0, schema.defaults(), None)
    return Current(environment, row.version, _complete(row.values), row)


def _complete(stored: dict) -> dict:
    """A stored document over the defaults (a version from before a setting existed lacks it)."""
    flat = schema.flatten(schema.defaults())
    flat.update({k: v for k, v in schema.flatten(stored).items() if k in schema.BY_PATH})
    return schema.nest(flat)


def config_all() -> list[Current]:
    return [config_current(env) for env in schema.ENVIRONMENTS]


def config_version_get(environment: str, version: int) -> ConfigVersion:
    environment_check(environment)
    row = ConfigVersion.objects.filter(environment=environment, version=version).first()
    if row is None:
        raise NotFound()
    return row


def config_versions(environment: str):
    environment_check(environment)
    return ConfigVersion.objects.filter(environment=environment).order_by("-version")


def config_values_at(environment: str, version: int) -> dict:
    """An environment's document as of ``version`` (0: the defaults)."""
    if version == 0:
        environment_check(environment)
        return schema.defaults()
    return _complete(config_version_get(environment, version).values)
