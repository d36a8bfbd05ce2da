"""Django's createsuperuser, with the password policy enforced on every path: ``--noinput`` with
DJANGO_SUPERUSER_PASSWORD is validated (Django skips that), and the interactive prompt offers no
"bypass password validation" — a weak password is asked again."""

import os

from django.contrib.auth.management.commands import createsuperuser as base
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError


class Command(base.Command):
    help = base.Command.help + (
        " The password must meet AUTH_PASSWORD_VALIDATORS (12+ characters, not common, not all digits, "
        "not like the e-mail); there is no bypass."
    )

    def handle(self, *args, **options):
        if not options["interactive"] and "DJANGO_SUPERUSER_PASSWORD" in os.environ:
            email = options.get(self.UserModel.USERNAME_FIELD) or os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
            try:
                validate_password(os.environ["DJANGO_SUPERUSER_PASSWORD"], self.UserModel(email=email or ""))
            except ValidationError as exc:
                raise CommandError("DJANGO_SUPERUSER_PASSWORD is too weak: " + " ".join(exc.messages)) from exc
        previous = getattr(base, "input", None)
        base.input = self._no_bypass  # the module's only input() call is the bypass question
        try:
            return super().handle(*args, **options)
        finally:
            if previous is None:
                del base.input
            else:
                base.input = previous

    def _no_bypass(self, prompt: str = "") -> str:
        if "Bypass password validation" in prompt:
            self.stderr.write("Choose a stronger password (validation can't be bypassed here).")
            return "n"
        return input(prompt)
