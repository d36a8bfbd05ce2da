"""Consume every active tenant's market stream and decide, until stopped."""

import signal
import time

from django.core.management.base import BaseCommand, CommandError

from intelligence.stream import TenantStream
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Consume market.data.update events of every active tenant, decide each closed bar, store decisions, "
        "update the paper ledger and publish the live feed. Safe to kill at any moment (pending events are "
        "re-delivered). To share the work, run one process per partition (--partitions N --partition I): each "
        "decides the instruments hashing to it. A second process for the same partition waits as a hot "
        "standby and takes over when the first dies."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", action="append", help="Only this tenant (slug); repeat it for several.")
        parser.add_argument("--once", action="store_true", help="Drain what is there, then exit.")
        parser.add_argument("--name", help="Consumer name (default: host-pid).")
        parser.add_argument("--batch", type=int, default=500, help="Events per read batch (500).")
        parser.add_argument("--partitions", type=int, default=1, help="How many processes share the work (1).")
        parser.add_argument("--partition", type=int, default=0, help="This process's partition, 0..N-1 (0).")
        parser.add_argument(
            "--rescan",
            type=float,
            default=5.0,
            help="Seconds between looks for new tenants (5): a tenant signed up now is decided within that.",
        )

    def handle(self, *args, **o):
        if not 0 <= o["partition"] < o["partitions"]:
            raise CommandError(f"--partition must be 0..{o['partitions'] - 1} for --partitions {o['partitions']}.")
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        streams: dict[int, TenantStream] = {}
        refreshed = 0.0
        try:
            while not stop["now"]:
                if time.monotonic() - refreshed > o["rescan"]:
                    qs = Tenant.objects.filter(status=Tenant.Status.ACTIVE).exclude(schema_name="public")
                    if o["tenant"]:
                        qs = qs.filter(slug__in=o["tenant"])
                    for tenant in qs.select_related("plan"):
                        if tenant.pk not in streams and tenant.status == Tenant.Status.ACTIVE:
                            stream = TenantStream(
                                tenant,
                                consumer_name=o["name"],
                                batch=o["batch"],
                                partition=o["partition"],
                                partitions=o["partitions"],
                                lease=True,
                            )
                            stream.start()
                            streams[tenant.pk] = stream
                    refreshed = time.monotonic()
                handled = sum(s.run_once(block_ms=20 if len(streams) > 1 else 500) for s in list(streams.values()))
                if o["once"] and handled == 0:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            for s in streams.values():
                s.release()  # a standby takes over at once instead of after the lease runs out
        total = sum(s.decided for s in streams.values())
        self.stdout.write(f"decided {total} bar(s)")
