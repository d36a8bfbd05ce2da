"""Run the registered event consumers (eventbus.runner) of every active tenant, until stopped."""

import signal
import time

from django.core.management.base import BaseCommand

from eventbus import runner
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Consume every active tenant's events other than market data (trade, position, performance, threshold, "
        "risk-limit, feedback, RL) with the consumers registered in eventbus.runner.CONSUMER_MODULES. At-least-once: "
        "safe to kill at any moment (pending entries are reclaimed by the next process)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant (slug).")
        parser.add_argument("--once", action="store_true", help="Drain what is there, then exit.")
        parser.add_argument("--name", help="Consumer name (default: host-pid).")
        parser.add_argument("--rescan", type=float, default=30.0, help="Seconds between looks for new tenants (30).")

    def handle(self, *args, **o):
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        consumers = runner.load()
        runners: dict[str, runner.Runner] = {}
        refreshed, handled = 0.0, 0
        try:
            while not stop["now"]:
                if time.monotonic() - refreshed > o["rescan"]:
                    qs = Tenant.objects.filter(status=Tenant.Status.ACTIVE).exclude(schema_name="public")
                    if o["tenant"]:
                        qs = qs.filter(slug=o["tenant"])
                    for schema in qs.values_list("schema_name", flat=True):
                        if schema not in runners:
                            runners[schema] = runner.Runner([schema], consumers, name=o["name"])
                    refreshed = time.monotonic()
                n = sum(r.run_once() for r in runners.values())
                handled += n
                if not n:
                    if o["once"]:
                        break
                    time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        self.stdout.write(f"handled {handled} event(s)")
