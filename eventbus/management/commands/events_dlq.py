"""Inspect and replay a tenant's dead-lettered events."""

import json

from django.core.management.base import BaseCommand, CommandError

from eventbus import bus
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "List a tenant's dead-lettered events (default), or replay them into their streams. Examples: "
        "python manage.py events_dlq --tenant demo; python manage.py events_dlq --tenant demo --replay all"
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--replay", nargs="+", metavar="ID", help="Dead-letter ids to replay, or 'all'.")
        parser.add_argument("--json", action="store_true", help="Print the list as JSON.")

    def handle(self, *args, **o):
        tenant = Tenant.objects.filter(slug=o["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant '{o['tenant']}'.")
        schema = tenant.schema_name
        if o["replay"]:
            ids = None if o["replay"] == ["all"] else o["replay"]
            n = bus.dlq_replay(schema=schema, ids=ids)
            self.stdout.write(f"replayed {n} event(s)")
            return
        items = bus.dlq_list(schema=schema, count=1000)
        if o["json"]:
            self.stdout.write(json.dumps(items))
            return
        if not items:
            self.stdout.write("no dead-lettered events")
        for item in items:
            where = f"{item['stream']}  deliveries={item['deliveries']}"
            self.stdout.write(f"{item['dlq_id']}  {item['type']:<28} {where}  {item['error']}")
