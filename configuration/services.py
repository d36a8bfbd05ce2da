"""Changing a tenant's configuration: edit, roll back, promote. Each change is validated against
the schema and the tenant's data, stored as a new version, audited with its diff, and pushed to
the running processes after commit (:mod:`configuration.reload`)."""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection, transaction

from api.errors import ApplicationError
from compliance.services import actor_display, audit_record

from . import reload, schema
from .models import ConfigVersion
from .selectors import Current, config_current, config_version_get, environment_check

# hooks(tenant, environment, before, after) run inside the writing transaction (e.g. intelligence
# keeps its active flow in step with the live environment's ``flow``)
_hooks: list[Callable] = []


def register_hook(fn: Callable) -> None:
    if fn not in _hooks:
        _hooks.append(fn)


def _lock() -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{connection.schema_name}.config"])


def _write(
    *, tenant, environment: str, values: dict, actor, source: str, based_on: str = "", comment: str = "",
    expected_version: int | None = None,
) -> tuple[ConfigVersion | None, list[dict]]:  # fmt: skip
    """Store ``values`` (validated) as the environment's next version; (None, []) when nothing changed."""
    with transaction.atomic():
        _lock()
        current = config_current(environment)
        if expected_version is not None and expected_version != current.version:
            raise ApplicationError(
                "version_conflict",
                f"{environment} is at version {current.version}, not {expected_version}: someone changed it "
                "meanwhile. Reload it, re-apply your change and send the new expected_version.",
                {"environment": environment, "current_version": current.version},
                status=409,
            )
        changes = schema.diff(current.values, values)
        if not changes:
            return None, []
        row = ConfigVersion.objects.create(
            environment=environment, version=current.version + 1, values=values, source=source,
            based_on=based_on, comment=(comment or "")[:300], created_by=actor_display(actor),
        )  # fmt: skip
        for hook in _hooks:
            hook(tenant, environment, current.values, values)
        audit_record(
            actor, {"rollback": "config.rolled_back", "promote": "config.promoted"}.get(source, "config.changed"), row,
            {"environment": environment, "version": row.version, "based_on": based_on, "changes": changes},
        )  # fmt: skip
        schema_name = connection.schema_name
        paths = [c["path"] for c in changes]
        transaction.on_commit(lambda: reload.publish(schema_name, environment, row.version, paths))
    return row, changes


def config_set(
    *, tenant, environment: str, values: dict, partial: bool, actor=None, comment: str = "",
    expected_version: int | None = None, source: str = ConfigVersion.Source.EDIT,
) -> tuple[Current, list[dict]]:  # fmt: skip
    """Replace (``partial`` false: what is left out takes its default) or update the environment's
    configuration. Returns the configuration in force and what changed (empty: nothing did)."""
    environment_check(environment)
    base = config_current(environment).values if partial else None
    document = schema.validate(values, tenant=tenant, base=base)
    _, changes = _write(
        tenant=tenant, environment=environment, values=document, actor=actor, source=source, comment=comment,
        expected_version=expected_version,
    )  # fmt: skip
    return config_current(environment), changes


def config_rollback(*, tenant, environment: str, version: int, actor=None, comment: str = "") -> tuple[Current, list]:
    """Bring back an older version's values as the environment's next version (the history keeps
    both). The values are validated again: a flow deleted since, or a plan that no longer allows
    it, is refused."""
    row = config_version_get(environment, version)
    document = schema.validate(row.values, tenant=tenant)
    _, changes = _write(
        tenant=tenant, environment=environment, values=document, actor=actor, source=ConfigVersion.Source.ROLLBACK,
        based_on=row.ref, comment=comment,
    )  # fmt: skip
    return config_current(environment), changes


def config_promote(
    *, tenant, environment: str, actor=None, comment: str = "", expected_version: int | None = None
) -> tuple[Current, list]:
    """Copy the previous environment's configuration in force (dev -> staging -> prod) into this one."""
    environment_check(environment)
    source_env = schema.PROMOTES_FROM.get(environment)
    if source_env is None:
        raise ApplicationError(
            "not_promotable",
            f"Nothing is promoted into {environment}: changes travel "
            f"{' -> '.join(schema.ENVIRONMENTS)}; edit {environment} directly.",
            {"environment": environment},
        )
    source = config_current(source_env)
    if source.version == 0:
        raise ApplicationError(
            "nothing_to_promote",
            f"{source_env} has no configuration stored yet: edit {source_env} first, then promote it.",
            {"from": source_env},
            status=409,
        )
    document = schema.validate(source.values, tenant=tenant)
    _, changes = _write(
        tenant=tenant, environment=environment, values=document, actor=actor, source=ConfigVersion.Source.PROMOTE,
        based_on=source.ref, comment=comment, expected_version=expected_version,
    )  # fmt: skip
    return config_current(environment), changes
