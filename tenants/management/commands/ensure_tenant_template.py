from django.core.management.base import BaseCommand

from tenants.services import tenant_template_ensure


class Command(BaseCommand):
    help = (
        "Create the migrated template schema that provision_tenant clones (idempotent). "
        "`make run` and the test setup call it after migrating."
    )

    def handle(self, *args, **opts):
        template = tenant_template_ensure()
        self.stdout.write(f"template schema ready: {template.schema_name}")
