"""Kill-switch propagation (issue 10, target <= 100 ms): a separate process polls
``kill_state`` as the decision paths do; this process engages and lifts the tenant's switch 20
times; the time from each commit to the other process seeing it is printed (p50 / max).
Run alone with ``python -m benchmarks.controls``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

WATCHER = """
import sys, time, django; django.setup()
from compliance import controls
schema = sys.argv[1]
last = None
print("ready", flush=True)
while True:
    state = controls.kill_state(schema) is not None
    if state != last:
        print(f"{int(state)} {time.time():.6f}", flush=True)
        last = state
    time.sleep(0.001)
"""


def bench_controls() -> None:
    import django

    django.setup()
    import statistics

    from compliance import controls
    from tenants.models import Tenant
    from tenants.services import tenant_provision

    tenant, _ = tenant_provision(slug=f"benchkill{int(time.time())}", plan="pro")
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, tenant.schema_name], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert watcher.stdout.readline().strip() == "ready"
        assert watcher.stdout.readline().split()[0] == "0"
        delays = []
        for i in range(20):
            t0 = time.time()
            if i % 2 == 0:
                controls.kill_engage(tenant=tenant, reason="bench", actor="bench")
            else:
                controls.kill_lift(tenant=tenant, actor=type("Staff", (), {"is_staff": True, "email": "bench"})())
            seen = float(watcher.stdout.readline().split()[1])
            delays.append((seen - t0) * 1000)
            time.sleep(0.03 + (i % 5) * 0.017)  # land at different points of the watcher's refresh
        print(
            f"kill switch reach  p50 {statistics.median(delays):6.1f} ms   max {max(delays):6.1f} ms   (engage/lift in "
            f"one process -> seen by another's decision path; 20 changes; target <= 100 ms; refresh every "
            f"{controls.REFRESH_S * 1000:.0f} ms)"
        )
    finally:
        watcher.kill()
        controls.kill_lift(tenant=tenant, actor=type("Staff", (), {"is_staff": True, "email": "bench"})())
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)


if __name__ == "__main__":
    bench_controls()
