"""Verify a tenant's audit chain and name the first bad record."""

import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Recompute every sealed audit record's and decision's digest and every batch's hash of a tenant's chains "
        "(audit trail, decisions); print each head hash (compare it with a copy kept elsewhere) and the first "
        "edited, deleted or inserted record. "
        "Exit status 1 when the chain does not verify. Example: python manage.py verify_audit --tenant demo"
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--seal", action="store_true", help="seal the settled records first (as the beat does)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **o):
        from compliance.chain import audit_chain, audit_verify

        tenant = Tenant.objects.filter(slug=o["tenant"]).exclude(status=Tenant.Status.TEMPLATE).first()
        if tenant is None:
            raise CommandError(f"No tenant '{o['tenant']}'.")
        with schema_context(tenant.schema_name):
            if o["seal"]:
                audit_chain()
            report = audit_verify()
        if o["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            for name, r in {"audit": report, **report.get("chains", {})}.items():
                noun = "records" if name == "audit" else name
                if r["ok"]:
                    self.stdout.write(
                        f"{name} chain of {tenant.slug} verifies: {r['records_verified']} {noun} in {r['batches']} "
                        f"batches, head {r['head_hash']}; {r['pending_unsealed']} {noun} not sealed yet"
                    )
                else:
                    p = r["first_problem"]
                    self.stdout.write(
                        f"{name} chain of {tenant.slug} is BROKEN: {p['message']} (first bad one #{p['record_id']})"
                    )
        if not report["ok"]:
            sys.exit(1)
