"""Export everything the platform holds about a person (GDPR Art. 15/20), for staff."""

import json

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User


class Command(BaseCommand):
    help = (
        "Write all personal data of the person with this e-mail as JSON (profile, memberships and roles, API keys "
        "they created without secrets, invitations sent and received, sessions count, and per tenant their audit "
        "records and the rows naming them). Audited as gdpr.exported in every tenant concerned. "
        "Example: python manage.py gdpr_export --email ada@example.com --output ada.json"
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True, help="the person's e-mail (case-insensitive)")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args, **o):
        from compliance.gdpr import gdpr_export

        user = User.objects.filter(email__iexact=o["email"].strip()).first()
        if user is None:
            raise CommandError(f"No user with the e-mail '{o['email']}'. Check the address (or search the admin).")
        text = json.dumps(gdpr_export(user=user, actor="system:gdpr_export"), indent=2, ensure_ascii=False)
        if o["output"]:
            with open(o["output"], "w", encoding="utf-8") as f:
                f.write(text + "\n")
            self.stderr.write(f"exported {user.email} to {o['output']}")
        else:
            self.stdout.write(text)
