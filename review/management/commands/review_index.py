"""Index tenants' decisions into the compliance review index now (the per-minute tenant tick does
this too). ``--full`` rescans from the first decision: rows already indexed are kept as they are,
missing ones are added (e.g. after restoring a tenant's decisions)."""

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from review.models import IndexState
from review.services import review_index
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Index decisions of every active tenant (or --tenant SLUG) into the compliance review index. "
        "--full rescans from the first decision, adding any missing rows and keeping existing ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="only this tenant's slug")
        parser.add_argument("--full", action="store_true", help="rescan from the first decision")

    def handle(self, *args, tenant=None, full=False, **options):
        tenants = Tenant.objects.filter(status=Tenant.Status.ACTIVE).order_by("slug")
        if tenant:
            tenants = tenants.filter(slug=tenant)
            if not tenants.exists():
                raise CommandError(f"No active tenant {tenant!r}; list them with the admin's Tenants page.")
        for t in tenants:
            if full:
                IndexState.objects.filter(tenant=t).update(last_decision_id=0)
            with schema_context(t.schema_name):
                n = review_index(tenant=t)
            self.stdout.write(f"{t.slug}: {n} decision(s) indexed")
