"""Stream throughput (issue 7): ``market.data.update`` events in, decisions out, as
``run_decision_stream`` does it: per read batch, O(1) feature updates per bar, ONE model prediction
call per version, agents + consensus per bar, then one transaction (bars stored, decisions
bulk-inserted, outcomes written, paper ledger and engine state saved), the feed published after
commit, the batch acknowledged. Target: >= 2,000 bars/s decided.

The bench tenant: 20 instruments of the seeded synthetic market (1,200 stored hourly bars each, so
the feature engines warm from the database as live), an XGBoost production model (200 trees) over
the agents' columns named by the active flow (every decision includes its prediction), then 3,000
live bars (150 per instrument, interleaved in time) published at once and drained. Warm-up (the
first bar of each instrument: engines built from stored bars) is timed apart.

Run alone with ``python -m benchmarks.stream``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

SYMBOLS = 20
HISTORY = 1200  # the agents' 1h features (with their 4h confirmations) need 838 bars
LIVE = 150
BATCH = 500


def _model(tenant, columns: list[str]):
    import numpy as np
    import xgboost as xgb

    from intelligence import services
    from models_registry.ml import artifacts
    from models_registry.services import registry

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, len(columns)))
    y = (X[:, 0] + rng.standard_normal(3000) > 0).astype(int)
    booster = xgb.XGBClassifier(n_estimators=200, max_depth=4, n_jobs=1).fit(X, y)
    bundle = artifacts.ModelBundle(
        members=[booster], weights=[1.0], task="binary", classes=["down", "up"], feature_names=columns
    )
    version = registry.version_from_bundle(
        model_name="bench-stream",
        bundle=bundle,
        feature_set=services.agents_feature_set("1h"),
        symbol="S00",
        timeframe="1h",
        report={},
        params={"family": "xgboost"},
        rows_used=3000,
        actor="bench",
    )
    model = version.model
    registry.model_settings_update(model=model, deploy_policy={"gate": "none"})
    registry.model_deploy(model=model, version=version)
    return model


def run() -> list[str]:
    import django

    django.setup()
    import numpy as np
    from django_tenants.utils import schema_context

    from eventbus import bus
    from features.engine import IncrementalEngine
    from intelligence import replay, services
    from intelligence.agents.features import agent_feature_spec
    from intelligence.models import Decision
    from intelligence.stream import TenantStream
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from tenants.models import Tenant
    from tenants.services import tenant_provision

    tenant = tenant_provision(slug=f"bench-stream-{int(time.time())}", plan="enterprise")[0]
    schema = tenant.schema_name
    lines = []
    try:
        with schema_context(schema):
            streams = []
            for k in range(SYMBOLS):
                symbol = f"S{k:02d}"
                bars = generate_bars(HISTORY, timeframe="1h", seed=100 + k)
                md_services.bars_import(
                    tenant=tenant, symbol=symbol, timeframe="1h", raw=read_table(as_csv(bars), "csv")
                )
                last = int(bars.index[-1].timestamp())
                events = replay.live_events(bars, symbol, "1h", after_ts=last, last_close=float(bars["close"].iloc[-1]))
                streams.append([next(events) for _ in range(3 * LIVE + 1)])
            columns = list(IncrementalEngine(agent_feature_spec("1h"), "1h").columns)
            model = _model(tenant, columns)
            services.flow_create(tenant=tenant, name="bench", config={"model": model.name}, actor="bench")
            stream = TenantStream(tenant, batch=BATCH)
            stream.start()

            def drain() -> int:
                n = 0
                while got := stream.run_once(block_ms=5):
                    n += got
                return n

            # warm-up: each instrument's first live bar builds its engines from the stored bars
            bus.publish_many("market.data.update", [s[0] for s in streams], schema=schema)
            t0 = time.perf_counter()
            drain()
            warm = time.perf_counter() - t0
            live = [s[i] for i in range(1, LIVE + 1) for s in streams]  # interleaved, in time order
            bus.publish_many("market.data.update", live, schema=schema)
            stream.timings.update(bars=0, compute_s=0.0, commit_s=0.0)
            profiler = None
            if os.environ.get("BENCH_PROFILE"):  # where the steady state's time goes
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            t0, cpu0 = time.perf_counter(), time.process_time()
            drain()
            took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            if profiler is not None:
                import pstats

                profiler.disable()
                pstats.Stats(profiler).sort_stats(os.environ["BENCH_PROFILE"]).print_stats(
                    os.environ.get("BENCH_PROFILE_FILTER", ""), 35
                )
            tm = stream.timings
            decided = Decision.objects.filter(source="stream").count()
            with_model = Decision.objects.filter(source="stream").exclude(model_version="").count()
            latency = np.array(
                Decision.objects.filter(source="stream")
                .order_by("-id")
                .values_list("latency_ms", flat=True)[: len(live)]
            )
            rate = len(live) / took
            lines.append(
                f"stream             {rate:7.0f} bars/s decided (target >= 2,000)   {len(live):,} bars of "
                f"{SYMBOLS} instruments in {took:.2f} s, read batches of {BATCH}"
            )
            lines.append(
                f"stream per bar     p50 {np.percentile(latency, 50) * 1000:6.0f} us   p99 "
                f"{np.percentile(latency, 99) * 1000:6.0f} us (features + share of the batch predict + agents + "
                f"consensus; the batch's one transaction is not in it)"
            )
            lines.append(
                f"stream split       compute {tm['compute_s']:.2f} s (features, batch predict, agents, consensus), "
                f"commit {tm['commit_s']:.2f} s (bars + decisions COPY + outcomes + ledger + engine state), rest "
                f"{took - tm['compute_s'] - tm['commit_s']:.2f} s (Redis read/ack, feed publish); this process used "
                f"{cpu:.2f} s CPU: {len(live) / cpu:,.0f} bars per CPU-second (the 2 cores are shared with "
                "PostgreSQL, Redis and the bench itself)"
            )
            lines.append(
                f"stream warm-up     {warm:7.2f} s for {SYMBOLS} instruments (engines from stored bars); "
                f"{decided:,} decisions, {with_model:,} with the model's prediction"
            )
            # processes: the command as deployed (start, warm-up from stored bars, decide, exit), one
            # process, then the same work split over two partitions
            for label, partitions, part in (("1 process ", 1, 1), ("2 processes", 2, 2)):
                more = [s[i] for i in range(1 + part * LIVE, 1 + (part + 1) * LIVE) for s in streams]
                bus.publish_many("market.data.update", more, schema=schema)
                t0 = time.perf_counter()
                procs = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            "manage.py",
                            "run_decision_stream",
                            "--tenant",
                            tenant.slug,
                            "--once",
                            "--partitions",
                            str(partitions),
                            "--partition",
                            str(i),
                            "--name",
                            f"bench-{partitions}-{i}",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    for i in range(partitions)
                ]
                codes = [p.wait() for p in procs]
                took = time.perf_counter() - t0
                lines.append(
                    f"stream {label}  {len(more) / took:7.0f} bars/s for {len(more):,} bars, each process "
                    f"started, warmed from stored bars and exited within it ({took:.2f} s; exit {codes})"
                )
    finally:
        for key in bus.client().scan_iter(f"stream:{schema}:*"):
            bus.client().delete(key)
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)
    return lines


def bench_stream() -> None:
    for line in run():
        print(line, flush=True)


if __name__ == "__main__":
    bench_stream()
