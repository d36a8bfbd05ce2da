"""Export a tenant's audit trail for a time range, verifiable offline."""

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Write a tenant's audit records in [start, end) (at most 366 days) as CSV or JSON, each with the chain batch "
        "that sealed it (id range, previous and own hash) and the digest the batch holds for it; JSON also lists "
        "every batch in full, so an auditor can recompute the chain offline (see compliance/audit_export.py). "
        "Audited as audit.exported. Example: python manage.py audit_export --tenant demo --start 2025-01-01 "
        "--end 2025-03-31 --format csv --output audit.csv"
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--start", help="ISO date or date-time (UTC if no offset); default end - 30 days")
        parser.add_argument("--end", help="exclusive; a date means the end of that day; default now")
        parser.add_argument("--format", choices=["csv", "json"], default="json")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args, **o):
        from compliance import audit_export

        tenant = Tenant.objects.filter(slug=o["tenant"]).exclude(status=Tenant.Status.TEMPLATE).first()
        if tenant is None:
            raise CommandError(f"No tenant '{o['tenant']}'.")
        try:
            start, end = audit_export.audit_range_parse(o["start"], o["end"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        out = open(o["output"], "wb") if o["output"] else None  # noqa: SIM115 (closed below)
        try:
            with schema_context(tenant.schema_name):
                audit_export.audit_export_record(
                    actor="system:audit_export", start=start, end=end, fmt=o["format"], channel="cli"
                )
                if o["format"] == "csv":
                    chunks = (line.encode() for line in audit_export.csv_lines(start, end))
                else:
                    chunks = audit_export.json_chunks(tenant.slug, start, end)
                for chunk in chunks:
                    if out is not None:
                        out.write(chunk)
                    else:
                        self.stdout.write(chunk.decode(), ending="")
        finally:
            if out is not None:
                out.close()
        if out is not None:
            self.stderr.write(f"wrote {o['output']}")
