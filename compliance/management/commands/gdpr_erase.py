"""Erase a person (GDPR Art. 17) without breaking any tenant's audit chain."""

import json

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from api.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Erase the person with this e-mail: the account becomes erased-<id>@invalid with no name, an unusable "
        "password and inactive; their sessions and the API keys they created are revoked; every created_by-style "
        "column naming them gets their pseudonym user:<id> instead, in every schema. The audit trail already names "
        "them only as user:<id>, so it is untouched and verify_audit still passes. Audited as gdpr.erased. "
        "Irreversible: asks for confirmation unless --yes. Example: python manage.py gdpr_erase --email ada@example.com"
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True, help="the person's e-mail (case-insensitive)")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **o):
        from compliance.gdpr import gdpr_erase

        user = User.objects.filter(email__iexact=o["email"].strip()).first()
        if user is None:
            raise CommandError(f"No user with the e-mail '{o['email']}'. Check the address (or search the admin).")
        if not o["yes"]:
            answer = input(f"Erase {user.email} (user:{user.pk})? This can't be undone. Type 'erase': ")
            if answer.strip() != "erase":
                raise CommandError("Not erased.")
        try:
            report = gdpr_erase(user=user, actor="system:gdpr_erase")
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if o["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        self.stdout.write(f"erased {report['subject']}: " + ", ".join(f"{k} {v}" for k, v in report["counts"].items()))
        if report["legacy_chained_records_naming_them"]:
            self.stdout.write(
                f"note: {report['legacy_chained_records_naming_them']} audit records written before pseudonyms still "
                "carry the e-mail; they are sealed in the chain and can't be edited (record this in the erasure log)."
            )
