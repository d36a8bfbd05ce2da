import json
import time

from django.core.management.base import BaseCommand, CommandError

from api.errors import ApplicationError
from tenants.services import tenant_provision


class Command(BaseCommand):
    help = (
        "Create a tenant: its schema (cloned from the migrated template, well under 2 s), the domain "
        "<slug>.<TENANT_BASE_DOMAIN>, an optional owner, and an API key with every scope (shown once). "
        "Example: python manage.py provision_tenant acme --plan pro --owner-email ops@acme.test --json"
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="Tenant slug: 3-40 lowercase letters, digits, hyphens.")
        parser.add_argument("--plan", choices=["free", "pro", "enterprise"], default="free")
        parser.add_argument("--name", default="", help="Display name (defaults to the slug).")
        parser.add_argument("--owner-email", default=None, help="Owner's e-mail; the user is created if new.")
        parser.add_argument(
            "--owner-password", default=None, help="Password for a newly created owner (else they use password reset)."
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help='Print {"slug", "schema_name", "api_key"} as one JSON line, last on stdout.',
        )

    def handle(self, *args, **opts):
        start = time.perf_counter()
        if opts["owner_password"] is not None:  # the password policy holds here too
            from accounts.models import User
            from accounts.services import password_check

            try:
                password_check(opts["owner_password"], User(email=opts["owner_email"] or ""))
            except ApplicationError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from exc
        try:
            tenant, raw_key = tenant_provision(
                slug=opts["slug"],
                plan=opts["plan"],
                name=opts["name"],
                owner_email=opts["owner_email"],
                owner_password=opts["owner_password"],
            )
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        elapsed = time.perf_counter() - start
        if opts["json"]:
            self.stdout.write(json.dumps({"slug": tenant.slug, "schema_name": tenant.schema_name, "api_key": raw_key}))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Tenant '{tenant.slug}' ready in {elapsed:.2f}s "
                    f"(schema {tenant.schema_name}, plan {tenant.plan.code})."
                )
            )
            self.stdout.write(f"API key (shown once, all scopes): {raw_key}")
