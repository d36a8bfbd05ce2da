"""Re-wrap every tenant's data keys under the current master key (the last step of a rotation)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import get_public_schema_name, schema_context

from api.errors import ApplicationError
from tenants.models import Tenant

ACTOR = "command:rotate_master_key"


class Command(BaseCommand):
    help = (
        "Re-wrap every data key of every tenant schema under the current master key "
        "(FIELD_ENCRYPTION_KEY / FIELD_ENCRYPTION_KEY_ID). Data keys wrapped by an older master key are "
        "unwrapped with FIELD_ENCRYPTION_OLD_KEYS, so set the new key as current and the old one there first "
        "(README, 'Rotating the master key'). Secrets and model artifacts are not re-encrypted (their data "
        "keys do not change), so this is quick and the service keeps running. Idempotent and resumable: each "
        "data key is committed on its own and a re-run only checks the keys already done. Once it reports "
        "no failures, remove the old key from FIELD_ENCRYPTION_OLD_KEYS. Exit status 1 if any key failed. "
        "Example: python manage.py rotate_master_key --new-data-keys"
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", action="append", default=[], help="only this tenant (slug); repeatable")
        parser.add_argument(
            "--new-data-keys",
            action="store_true",
            help="also start a fresh data key per tenant for new writes (old blobs stay readable with the "
            "retired ones); skipped for a tenant whose active data key was created under the current master key",
        )
        parser.add_argument("--dry-run", action="store_true", help="count what would change; write nothing")

    def handle(self, *args, **o):
        from compliance import vault
        from compliance.models import DataKey
        from compliance.services import audit_record

        try:
            ring = vault.master_key_ring()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        current = settings.FIELD_ENCRYPTION_KEY_ID
        tenants = Tenant.objects.exclude(schema_name=get_public_schema_name()).order_by("slug")
        if o["tenant"]:
            tenants = tenants.filter(slug__in=o["tenant"])
            missing = sorted(set(o["tenant"]) - set(tenants.values_list("slug", flat=True)))
            if missing:
                raise CommandError(f"No tenant {', '.join(missing)}.")
        tenants = list(tenants)
        self.stdout.write(
            f"master key ring: current '{current}', old {sorted(k for k in ring if k != current) or 'none'}; "
            f"{len(tenants)} tenant schema(s){' (dry run)' if o['dry_run'] else ''}"
        )
        totals = {"rewrapped": 0, "current": 0, "failed": 0, "new_data_keys": 0}
        for n, tenant in enumerate(tenants, 1):
            counts = {"rewrapped": 0, "current": 0, "failed": 0}
            problems, new_key = [], None
            with schema_context(tenant.schema_name):
                for dk in DataKey.objects.order_by("id"):
                    if o["dry_run"]:
                        counts["current" if dk.master_key_id == current else "rewrapped"] += 1
                        continue
                    try:
                        counts["rewrapped" if vault.data_key_rewrap(dk) else "current"] += 1
                    except ApplicationError as exc:
                        counts["failed"] += 1
                        problems.append(exc.message)
                if o["new_data_keys"] and not o["dry_run"] and not counts["failed"]:
                    new_key = vault.data_key_start_new()
                if counts["rewrapped"] or new_key:
                    if not o["dry_run"]:
                        audit_record(
                            ACTOR,
                            "vault.master_key_rotated",
                            details={
                                "master_key_id": current,
                                "rewrapped": counts["rewrapped"],
                                "new_data_key": new_key.key_id if new_key else None,
                            },
                        )
            verb = "to re-wrap" if o["dry_run"] else "re-wrapped"
            line = (
                f"[{n}/{len(tenants)}] {tenant.slug}: {counts['rewrapped']} {verb}, "
                f"{counts['current']} already under '{current}', {counts['failed']} failed"
            )
            if new_key:
                line += f"; new data key {new_key.key_id}"
            self.stdout.write(line)
            for problem in problems:
                self.stderr.write(f"    {problem}")
            for k in counts:
                totals[k] += counts[k]
            totals["new_data_keys"] += bool(new_key)
        self.stdout.write(
            f"total: {totals['rewrapped']} {'to re-wrap' if o['dry_run'] else 're-wrapped'}, "
            f"{totals['current']} already current, {totals['failed']} failed, "
            f"{totals['new_data_keys']} new data key(s)"
        )
        if totals["failed"]:
            self.stderr.write(
                "Some data keys did not unwrap: keep every old master key configured, fix the ring "
                "(FIELD_ENCRYPTION_OLD_KEYS) and run this again; it resumes where it stopped."
            )
            raise SystemExit(1)
        if o["dry_run"]:
            return
        if o["tenant"]:
            self.stdout.write(
                f"The data keys of {', '.join(o['tenant'])} are wrapped by '{current}'; run without --tenant "
                "before removing old master keys."
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Every data key is wrapped by '{current}': the old master keys can be removed from "
                    "FIELD_ENCRYPTION_OLD_KEYS."
                )
            )
