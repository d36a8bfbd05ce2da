from django.core.management.base import BaseCommand, CommandError

from accounts import totp
from accounts.models import User


class Command(BaseCommand):
    help = (
        "Remove a staff member's authenticator (lost phone): Django admin asks for their password only, "
        "until they enrol again at /accounts/two-factor/. Confirm who is asking some other way first."
    )

    def add_arguments(self, parser):
        parser.add_argument("email", help="The person's log-in e-mail.")

    def handle(self, *args, **options):
        user = User.objects.filter(email__iexact=options["email"].strip()).first()
        if user is None:
            raise CommandError(f"No account with e-mail {options['email']!r}.")
        if totp.totp_reset(user=user):
            self.stdout.write(
                f"Authenticator removed for user:{user.pk}; they can enrol again at /accounts/two-factor/."
            )
        else:
            self.stdout.write(f"user:{user.pk} had no authenticator; nothing changed.")
