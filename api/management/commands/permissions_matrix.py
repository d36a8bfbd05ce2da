import difflib

from django.core.management.base import BaseCommand, CommandError

from api.permissions_matrix import MATRIX_PATH, render


class Command(BaseCommand):
    help = (
        "Write docs/permissions.md: every API operation × role (viewer, analyst, admin, owner) and API-key "
        "scope (read, trade, admin), from each view's `access` declaration. With --check, write nothing and "
        "exit 1 (showing the diff) when the file is out of date: commit the regenerated file with the change."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Compare with the committed file; don't write.")

    def handle(self, *args, **options):
        text = render()
        if options["check"]:
            current = MATRIX_PATH.read_text() if MATRIX_PATH.exists() else ""
            if current != text:
                diff = "".join(
                    difflib.unified_diff(
                        current.splitlines(True), text.splitlines(True), "docs/permissions.md", "from the code"
                    )
                )
                raise CommandError(
                    "docs/permissions.md is out of date with the views' access; run "
                    "'python manage.py permissions_matrix' and commit it.\n" + diff
                )
            self.stdout.write("docs/permissions.md matches the code.")
            return
        MATRIX_PATH.parent.mkdir(parents=True, exist_ok=True)
        MATRIX_PATH.write_text(text)
        self.stdout.write(f"Wrote {MATRIX_PATH} ({text.count(chr(10)) - 14} operations).")
