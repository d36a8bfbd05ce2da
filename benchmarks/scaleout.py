"""Scale-out, exercised on loopback (issue 14, part 7; docs/deploy.md is the plan it checks).

``make scaleout`` (``python -m benchmarks.scaleout``) starts, against one PostgreSQL database
(``DATABASE_URL``) and one Redis server (``REDIS_URL``):

- 2 web processes (gunicorn, ``config/gunicorn.conf.py``, one worker each, access log on),
- 2 WebSocket edge processes (``run_feed_edge``: ``ws/decisions/``),
- 2 Celery workers (queues ``celery`` and ``notify``),
- 2 decision stream consumers (``run_decision_stream --partitions 2 --partition 0|1``) and a hot
  standby for partition 0 (the same command again: it waits on the partition's lease),
- a round-robin reverse proxy in front of the web and edge processes (``benchmarks/proxy.py``),

sets up two tenants (stored bars of 4 instruments each; tenant A's first instrument gets a model
trained by the Celery workers and deployed), connects WebSocket clients of both tenants through the
proxy (so each tenant has sockets on both edge processes), feeds live bars on the tenants' event
streams while REST requests go through the proxy, and then checks:

(a) every (tenant, symbol, timeframe, bar) was decided exactly once in the database and every bar
    fed was decided, although partition 0's owner is killed with SIGKILL halfway through the feed
    (once it has decided some bars) and its standby takes over (when, and how many bars each
    process decided, from their own "decided N" lines and the leases);
(b) each WebSocket client received every decision of its tenant, once, in bar order per
    instrument, and none of the other tenant's;
(c) REST through the proxy reached both web processes (counted in each process's access log),
    every answer a 200 with only its tenant's data; both Celery workers answer a ping and
    ``/health/ready`` through the proxy is 200.

It prints what it checked with figures (and CPU per request / per decision, the per-core inputs of
docs/deploy.md's capacity plan), exits 1 if a check fails, and stops every process it started and
drops its tenants whatever happens. Redis logical databases 6-10 are used unless ``REDIS_DB_*`` are
set, so a running ``make run`` (databases 1-5) is not touched. ``--port-base N`` puts the servers
on N..N+6 (default: free ports); ``--json`` prints the result as one JSON line at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

for _name, _db in (("CACHE", 6), ("BROKER", 7), ("CHANNELS", 8), ("USAGE", 9), ("STREAMS", 10)):
    os.environ.setdefault(f"REDIS_DB_{_name}", str(_db))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from benchmarks.live import CpuMeter, _pg_backends, _pids  # noqa: E402
from benchmarks.loadgen import pct, raise_nofile  # noqa: E402

PARTITIONS = 2
SYMBOLS_PER_TENANT = 4  # two per partition
HISTORY = 1_000  # stored hourly bars per instrument: past the agents' warm-up (838 at 1h), every live bar is decided
TIMEFRAME = "1h"
STEPS = 40  # live bars per instrument
STEP_S = 0.25  # between two steps (one bar of every instrument of both tenants)
KILL_AT_STEP = STEPS // 2  # the owner of partition 0 is killed before this step's bars, once it has decided some
WS_PER_TENANT = 2
REST_REQUESTS = 60
CAPACITY_REQUESTS = 300
PYTHON = sys.executable


# ----------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen
    log: object
    port: int | None = None

    def text(self) -> str:
        self.log.flush()
        with open(self.log.name, errors="replace") as fh:
            return fh.read()

    def tail(self, n: int = 20) -> str:
        return "".join(self.text().splitlines(keepends=True)[-n:])

    def stop(self, sig: int = signal.SIGTERM, wait: float = 15.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Fleet:
    env: dict
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], port: int | None = None, env: dict | None = None) -> Proc:
        log = tempfile.NamedTemporaryFile("w+", prefix=f"scaleout-{name}-", suffix=".log")
        proc = subprocess.Popen(
            argv, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # its own process group: stopped with every child (gunicorn/celery workers)
        )  # fmt: skip
        p = Proc(name, proc, log, port)
        self.procs.append(p)
        return p

    def wait_ports(self, seconds: float = 90.0) -> None:
        deadline = time.monotonic() + seconds
        for p in self.procs:
            if p.port is None:
                continue
            while True:
                if p.proc.poll() is not None:
                    raise RuntimeError(f"{p.name} exited with {p.proc.returncode}:\n{p.tail()}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", p.port), timeout=1):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{p.name}: nothing listens on {p.port}:\n{p.tail()}")
                time.sleep(0.1)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGKILL)
                p.proc.wait(5)
            # whatever the group still holds (a worker child that outlived its parent)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.proc.pid, signal.SIGKILL)
        for p in self.procs:
            p.log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env() -> dict:
    from django.conf import settings

    from config.settings import services

    db = settings.DATABASES["owner" if "owner" in settings.DATABASES else "default"]
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        REDIS_URL=settings.REDIS_URL,
        REDIS_DB_CACHE=str(services.REDIS_DB_CACHE),
        REDIS_DB_BROKER=str(services.REDIS_DB_BROKER),
        REDIS_DB_CHANNELS=str(services.REDIS_DB_CHANNELS),
        REDIS_DB_USAGE=str(services.REDIS_DB_USAGE),
        REDIS_DB_STREAMS=str(services.REDIS_DB_STREAMS),
    )
    if not os.environ.get("DATABASE_URL"):  # the embedded server: hand its address on
        from urllib.parse import quote

        host = db.get("HOST") or ""
        q = f"?host={quote(host)}" if host.startswith("/") else ""
        where = "" if q else f"{host or '127.0.0.1'}:{db.get('PORT') or 5432}"
        env["DATABASE_URL"] = f"postgresql://{quote(db['USER'])}@{where}/{db['NAME']}{q}"
    return env


# ----------------------------------------------------------------------------- tenants


@dataclass
class ScaleTenant:
    tenant: object
    key: str
    symbols: list[str]
    live: list[list[dict]]  # per step: one bar event per symbol
    model: str | None = None


def _symbols(prefix: str) -> list[str]:
    from intelligence.stream import partition_of

    chosen: list[str] = []
    for candidate in (f"{prefix}{i}" for i in range(200)):
        if sum(partition_of(s, PARTITIONS) == partition_of(candidate, PARTITIONS) for s in chosen) < 2:
            chosen.append(candidate)
        if len(chosen) == SYMBOLS_PER_TENANT:
            return chosen
    raise RuntimeError("no symbols")


def _tenant(slug: str, prefix: str, seed: int) -> ScaleTenant:
    from django_tenants.utils import schema_context

    from intelligence import replay
    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from tenants.services import api_key_create, tenant_provision

    tenant, _ = tenant_provision(slug=slug, plan="enterprise")
    _, key = api_key_create(tenant=tenant, name="scaleout", scopes=["read", "trade"], created_by=None)
    symbols = _symbols(prefix)
    streams = []
    with schema_context(tenant.schema_name):
        for k, symbol in enumerate(symbols):
            bars = generate_bars(HISTORY, timeframe=TIMEFRAME, seed=seed + k, planted_signal=0.05)
            md_services.bars_import(
                tenant=tenant, symbol=symbol, timeframe=TIMEFRAME, raw=read_table(as_csv(bars), "csv")
            )
            events = replay.live_events(
                bars,
                symbol,
                TIMEFRAME,
                after_ts=int(bars.index[-1].timestamp()),
                last_close=float(bars["close"].iloc[-1]),
            )
            streams.append([next(events) for _ in range(STEPS)])
    live = [list(step) for step in zip(*streams, strict=True)]
    return ScaleTenant(tenant, key, symbols, live)


def _train_and_deploy(st: ScaleTenant, timeout: float = 240.0) -> str:
    """A small XGBoost model of the first instrument, trained by the Celery workers, made production."""
    from django_tenants.utils import schema_context

    from models_registry.models import FINISHED_STATES, JobState, TrainingJob
    from models_registry.services import model_deploy, model_settings_update
    from models_registry.services.training import training_job_create

    with schema_context(st.tenant.schema_name):
        job, _ = training_job_create(
            tenant=st.tenant, actor="scaleout", model_name="scaleout", symbol=st.symbols[0], timeframe=TIMEFRAME,
            families=["xgboost"], n_trials=2,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            job = TrainingJob.objects.get(pk=job.pk)
            if job.state in FINISHED_STATES:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"training job {job.pk} still {job.state} after {timeout:.0f} s")
            time.sleep(0.5)
        if job.state != JobState.SUCCEEDED:
            raise RuntimeError(f"training job {job.state}: {job.error[-500:]}")
        version = job.model_version
        model_settings_update(model=version.model, deploy_policy={"gate": "none"})
        model_deploy(model=version.model, version=version)
        st.model = version.ref
        return version.ref


def _clear_redis(schemas: list[str]) -> None:
    from eventbus import bus

    r = bus.client()
    for schema in schemas:
        for pattern in (f"stream:{schema}:*", f"lease:{schema}:*"):
            for key in r.scan_iter(pattern):
                r.delete(key)


def _wait_decided(tenants: list[ScaleTenant], *, partition: int, at_least: int, timeout: float) -> None:
    """Until each tenant has ``at_least`` stream decisions of the instruments of ``partition``."""
    from django_tenants.utils import schema_context

    from intelligence.models import Decision
    from intelligence.stream import partition_of

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = []
        for t in tenants:
            mine = [sym for sym in t.symbols if partition_of(sym, PARTITIONS) == partition]
            with schema_context(t.tenant.schema_name):
                counts.append(Decision.objects.filter(source="stream", symbol__in=mine).count())
        if min(counts) >= at_least:
            return
        time.sleep(0.1)


def _watch_takeover(keys: list[str], name: str, out: dict, timeout: float = 90.0) -> None:
    """Seconds until ``name`` holds each lease of ``keys`` (``out[key]``)."""
    from eventbus import bus

    started = time.monotonic()
    while len(out) < len(keys) and time.monotonic() - started < timeout:
        for k in keys:
            h = bus.client().get(k)
            if k not in out and h is not None and (h.decode() if isinstance(h, bytes) else h) == name:
                out[k] = time.monotonic() - started
        time.sleep(0.1)


# ----------------------------------------------------------------------------- clients


class WsClients:
    """WebSocket clients on their own event loop (a thread): each keeps what it received, with
    the time it arrived."""

    def __init__(self, url: str):
        self.url = url
        self.clients: list[dict] = []
        self._loop = None
        self._thread = None
        self._stop = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def start(self, plan: list[tuple[str, str]]) -> None:
        """``plan``: (tenant label, API key) per client, connected one after the other (so the
        proxy's round robin puts consecutive ones on different edge processes)."""
        import asyncio

        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._main(plan))
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                self.error = exc
                self._ready.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or self.error:
            raise RuntimeError(f"WebSocket clients did not connect: {self.error!r}")

    async def _main(self, plan):
        import asyncio

        from websockets.asyncio.client import connect

        self._stop = asyncio.Event()
        conns = []
        for label, key in plan:
            ws = await connect(self.url, additional_headers={"Authorization": f"Api-Key {key}"}, max_size=2**20)
            client = {"tenant": label, "messages": []}
            self.clients.append(client)
            conns.append((ws, client))
        readers = [asyncio.create_task(self._read(ws, client)) for ws, client in conns]
        await asyncio.sleep(0.5)  # subscribed on the edges before the first decision
        self._ready.set()
        await self._stop.wait()
        for ws, _ in conns:
            await ws.close()
        for t in readers:
            t.cancel()

    @staticmethod
    async def _read(ws, client):
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("type") == "decision":
                client["messages"].append((time.time(), msg["id"], msg["data"], msg.get("cursor")))

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(15)


def _get(port: int, path: str, key: str | None = None) -> tuple[int, bytes]:
    """One request on a new connection (so the proxy balances it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Api-Key {key}"} if key else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ----------------------------------------------------------------------------- the run


class Checks:
    def __init__(self):
        self.rows: list[tuple[str, bool, str]] = []

    def __call__(self, name: str, ok: bool, detail: str) -> bool:
        self.rows.append((name, bool(ok), detail))
        print(f"  [{'ok' if ok else 'FAILED'}] {name}: {detail}", flush=True)
        return ok

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.rows)


def run(port_base: int = 0) -> dict:
    import django

    django.setup()
    raise_nofile()
    from django.db import connection
    from django_tenants.utils import schema_context

    from eventbus import bus
    from intelligence.models import Decision, EngineCheckpoint
    from tenants.models import Tenant
    from tenants.services import tenant_template_ensure

    ports = [port_base + i if port_base else _free_port() for i in range(7)]
    web_ports, edge_ports, proxy_port = ports[0:2], ports[2:4], ports[4]
    checks = Checks()
    result: dict = {"checks": checks.rows}
    stamp = int(time.time())
    tenants: list[ScaleTenant] = []
    fleet = Fleet(_child_env())
    ws = None
    try:
        t0 = time.perf_counter()
        tenant_template_ensure()
        tenants = [_tenant(f"scaleouta{stamp}", "SOA", 21), _tenant(f"scaleoutb{stamp}", "SOB", 41)]
        connection.set_schema_to_public()
        _clear_redis([t.tenant.schema_name for t in tenants])
        print(
            f"scale-out on loopback: 2 tenants x {SYMBOLS_PER_TENANT} instruments ({TIMEFRAME}), "
            f"set up in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        # --- the fleet
        for i, port in enumerate(web_ports):
            fleet.start(
                f"web{i}", [PYTHON, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py"], port,
                {"HTTP_PORT": str(port), "WEB_WORKERS": "1", "ACCESS_LOG": "1"},
            )  # fmt: skip
        for i, port in enumerate(edge_ports):
            fleet.start(f"edge{i}", [PYTHON, "manage.py", "run_feed_edge", "--port", str(port)], port)
        for i in range(2):
            fleet.start(
                f"worker{i}",
                [PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", "celery,notify", "-c", "1",
                 "-n", f"scaleout{i}-{stamp}@%h", "-l", "warning", "--without-gossip", "--without-mingle"],
            )  # fmt: skip
        backends = lambda ps: ",".join(f"127.0.0.1:{p}" for p in ps)  # noqa: E731
        proxy = fleet.start(
            "proxy",
            [PYTHON, "-m", "benchmarks.proxy", "--port", str(proxy_port), "--http", backends(web_ports),
             "--ws", backends(edge_ports)],
            proxy_port,
        )  # fmt: skip
        fleet.wait_ports()
        from config.celery import app as celery_app

        deadline = time.monotonic() + 60
        replies: list = []
        while time.monotonic() < deadline:
            replies = celery_app.control.ping(timeout=1.0)
            if len({n for r in replies for n in r if f"-{stamp}@" in n}) >= 2:
                break
        names = sorted({n for r in replies for n in r if f"-{stamp}@" in n})
        checks("celery workers", len(names) == 2, f"{len(names)} of 2 answer a ping ({', '.join(names)})")

        t0 = time.perf_counter()
        model = _train_and_deploy(tenants[0])
        took = time.perf_counter() - t0
        print(f"  model {model} of {tenants[0].symbols[0]} trained by a worker and deployed in {took:.1f} s")

        slugs = [arg for t in tenants for arg in ("--tenant", t.tenant.slug)]

        def consumer(label: str, partition: int) -> Proc:
            argv = [PYTHON, "manage.py", "run_decision_stream", *slugs, "--partitions", str(PARTITIONS)]
            argv += ["--partition", str(partition), "--name", f"scaleout-{label}", "--batch", "50", "--rescan", "1"]
            return fleet.start(f"stream{label}", argv)

        streams = [consumer(str(i), i) for i in range(PARTITIONS)]
        # both consumers hold their partition's lease of both tenants before the first bar
        deadline = time.monotonic() + 60
        want = {f"lease:{t.tenant.schema_name}:decisions-{i}of{PARTITIONS}" for t in tenants for i in range(PARTITIONS)}
        while not all(bus.client().get(k) for k in want):
            for s in streams:
                if s.proc.poll() is not None:
                    raise RuntimeError(f"{s.name} exited:\n{s.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("the stream consumers did not take their partitions")
            time.sleep(0.2)
        # a hot standby for partition 0 (another machine, in production): it waits on the lease
        standby = consumer("0b", 0)
        want0 = [k for k in want if k.endswith(f"decisions-0of{PARTITIONS}")]
        streams.append(standby)
        takeover: dict[str, float] = {}

        # --- WebSocket clients through the proxy: A, A, B, B: each tenant on both edge processes
        labels = {t.tenant.schema_name: t for t in tenants}
        plan = [(t.tenant.schema_name, t.key) for t in tenants for _ in range(WS_PER_TENANT)]
        ws = WsClients(f"ws://127.0.0.1:{proxy_port}/ws/decisions/")
        ws.start(plan)
        edge_stats = [json.loads(_get(p, "/health")[1]) for p in edge_ports]
        checks(
            "sockets spread over the edge processes",
            all(s["sockets"] == WS_PER_TENANT and s["tenants"] == len(tenants) for s in edge_stats),
            ", ".join(f"edge{i}: {s['sockets']} sockets of {s['tenants']} tenants" for i, s in enumerate(edge_stats)),
        )

        # --- feed bars, REST through the proxy meanwhile
        published: dict[tuple[str, str, int], float] = {}
        step_of: dict[tuple[str, str, int], int] = {}
        rest: list[tuple[str, int, bytes]] = []

        def rest_load():
            for n in range(REST_REQUESTS):
                t = tenants[n % len(tenants)]
                status, body = _get(proxy_port, f"/api/v1/decisions/?limit=20&scaleout={n}", t.key)
                rest.append((t.tenant.schema_name, status, body))
                time.sleep(STEP_S * STEPS / REST_REQUESTS)

        rest_thread = threading.Thread(target=rest_load, daemon=True)
        meter = CpuMeter(
            {
                "streams": lambda: [s.proc.pid for s in streams],
                "postgres": _pg_backends,
            }
        )
        meter.start()
        t_feed = time.perf_counter()
        rest_thread.start()
        for step in range(STEPS):
            if step == KILL_AT_STEP:  # the owner of partition 0 dies outright: no clean-up, lease left to expire
                _wait_decided(tenants, partition=0, at_least=2, timeout=60)  # once it has decided some
                os.killpg(streams[0].proc.pid, signal.SIGKILL)
                threading.Thread(target=_watch_takeover, args=(want0, "scaleout-0b", takeover), daemon=True).start()
            for t in tenants:
                now = time.time()
                for bar in t.live[step]:
                    published[(t.tenant.schema_name, bar["symbol"], bar["ts"])] = now
                    step_of[(t.tenant.schema_name, bar["symbol"], bar["ts"])] = step
                bus.publish_many("market.data.update", t.live[step], schema=t.tenant.schema_name)
            time.sleep(STEP_S)
        expected = len(published)
        deadline = time.monotonic() + 180
        while True:
            decided = 0
            for t in tenants:
                with schema_context(t.tenant.schema_name):
                    decided += Decision.objects.filter(source="stream").count()
            if decided >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        drained = time.perf_counter() - t_feed
        rest_thread.join(60)
        # the feed is after commit: let the last messages reach the sockets
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(len(c["messages"]) >= expected // len(tenants) for c in ws.clients):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        ws.stop()
        used = meter.stop()

        # --- (a) exactly once
        print("(a) each bar decided exactly once, by two consumers and a standby that takes over from a killed one")
        db: dict[str, list[tuple[int, str, int]]] = {}
        dupes = 0
        for t in tenants:
            with schema_context(t.tenant.schema_name), connection.cursor() as cur:
                rows = list(
                    Decision.objects.filter(source="stream")
                    .order_by("id")
                    .values_list("id", "symbol", "timeframe", "ts")
                )
                db[t.tenant.schema_name] = [(pk, sym, int(ts.timestamp())) for pk, sym, _tf, ts in rows]
                cur.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM {Decision._meta.db_table} WHERE source = 'stream' "
                    "GROUP BY symbol, timeframe, ts HAVING count(*) > 1) d"
                )
                dupes += cur.fetchone()[0]
                parts = set(EngineCheckpoint.objects.values_list("partition", flat=True))
            checks(
                f"{t.tenant.slug}: partitions that decided",
                parts == {f"{i}of{PARTITIONS}" for i in range(PARTITIONS)},
                ", ".join(sorted(parts)) or "none",
            )
        decided_keys = [(schema, sym, ts) for schema, rows in db.items() for _, sym, ts in rows]
        total = len(decided_keys)
        checks(
            "no bar decided twice",
            dupes == 0 and len(set(decided_keys)) == total,
            f"{dupes} duplicated bars of {total}",
        )
        if not checks(
            "every bar fed was decided",
            set(decided_keys) == set(published),
            f"{len(set(published) & set(decided_keys))} of {expected} fed bars decided, "
            f"{len(set(decided_keys) - set(published))} decisions of bars never fed, in {drained:.1f} s",
        ):
            counts = {}
            for schema, sym, _ in decided_keys:
                counts[(schema, sym)] = counts.get((schema, sym), 0) + 1
            print(f"  decided per instrument: {counts}")
            for s in streams:
                print(f"--- {s.name}:\n{s.tail(30)}")
        for s in streams:
            s.stop(signal.SIGTERM, 30)
        decided_by = {}
        for s in streams:
            m = re.search(r"decided (\d+) bar", s.text())
            decided_by[s.name] = int(m.group(1)) if m else None
        from intelligence.stream import partition_of

        part1 = sum(1 for _, sym, _ in decided_keys if partition_of(sym, PARTITIONS) == 1)
        owner1, spare = decided_by["stream1"], decided_by["stream0b"]
        checks(
            "partition 1's consumer decided its instruments' bars",
            owner1 == part1 and owner1 > 0,
            f"stream1 {owner1} of the {part1} bars of its instruments",
        )
        checks(
            "the standby took partition 0 over from its killed owner",
            len(takeover) == len(want0) and spare and spare > 0 and owner1 + spare < total,
            f"owner killed (SIGKILL) at bar {KILL_AT_STEP + 1} of {STEPS}; the standby took the leases "
            + ", ".join(f"{k.split(':')[1]} {v:.1f} s" for k, v in sorted(takeover.items(), key=lambda kv: kv[1]))
            + f" later (LEASE_S 15; a lease waits for the previous tenant's first batch) and decided {spare} bars; "
            f"the killed owner {total - part1 - (spare or 0)} before it died",
        )
        result["failover_s"] = max(takeover.values()) if takeover else None

        # --- (b) WebSocket fan-out
        print("(b) WebSocket fan-out through the proxy")
        latencies, steady, failed_over, inversions, foreign_total = [], [], [], 0, 0
        cursor_inversions, cursorless = 0, 0
        for i, c in enumerate(ws.clients):
            schema = c["tenant"]
            mine = db[schema]
            ids = [m[1] for m in c["messages"]]
            foreign = [m for m in c["messages"] if m[2]["symbol"] not in labels[schema].symbols]
            foreign_total += len(foreign)
            per_symbol_ok = True
            for symbol in labels[schema].symbols:
                got = [m[1] for m in c["messages"] if m[2]["symbol"] == symbol]
                want_ids = [pk for pk, sym, ts in sorted(mine, key=lambda r: r[2]) if sym == symbol]
                per_symbol_ok &= got == want_ids
            top = 0
            for x in ids:
                inversions += x < top
                top = max(top, x)
            last = (0, 0)
            for *_, cursor in c["messages"]:  # the resume cursor: publish order, hence commit order
                parsed = tuple(int(part) for part in cursor.split("-")) if cursor else None
                cursorless += parsed is None
                cursor_inversions += parsed is not None and parsed <= last
                last = parsed or last
            for recv, _, data, _cursor in c["messages"]:
                ts = int(dt.datetime.fromisoformat(data["ts"]).timestamp())
                sent = published.get((schema, data["symbol"], ts))
                if sent is None:
                    continue
                if partition_of(data["symbol"], PARTITIONS) == 0:  # failed over: waits for the standby
                    failed_over.append((recv - sent) * 1000)
                    continue
                latencies.append((recv - sent) * 1000)
                if step_of[(schema, data["symbol"], ts)] >= 2:  # past the consumer's first batches
                    steady.append((recv - sent) * 1000)
            checks(
                f"client {i} ({labels[schema].tenant.slug})",
                sorted(ids) == sorted(pk for pk, _, _ in mine)
                and len(ids) == len(set(ids))
                and per_symbol_ok
                and not foreign,
                f"{len(ids)} of {len(mine)} decisions, {len(ids) - len(set(ids))} repeated, "
                f"bar order per instrument {'kept' if per_symbol_ok else 'BROKEN'}, {len(foreign)} of another tenant",
            )
        if latencies and steady:
            p50, p99, s50, s99 = (
                pct(v, q) for v, q in ((latencies, 0.5), (latencies, 0.99), (steady, 0.5), (steady, 0.99))
            )
            print(
                f"  bar published -> decision on the socket (stream, edge, proxy), partition 1: p50 {p50:.0f} ms, "
                f"p99 {p99:.0f} ms ({len(latencies)} deliveries; the first bars wait for the consumer's "
                f"pipeline load and warm-up); from the third bar on p50 {s50:.0f} ms, p99 {s99:.0f} ms"
            )
        if failed_over:
            print(
                f"  partition 0 (its owner killed at bar {KILL_AT_STEP + 1}, the standby took over): "
                f"p50 {pct(failed_over, 0.5) / 1000:.1f} s, max {max(failed_over) / 1000:.1f} s "
                f"({len(failed_over)} deliveries)"
            )
        print(
            f"  ids out of global order across a socket's stream: {inversions} (two partitions commit independently; "
            "order holds per instrument, see docs/deploy.md)"
        )
        checks(
            "resume cursors in publish order on every socket",
            cursor_inversions == 0 and cursorless == 0,
            f"{cursor_inversions} cursor inversions, {cursorless} messages without one: resuming with ?cursor= "
            f"gets the {inversions} decisions that came after a higher id (?after= could skip them)",
        )

        # --- (c) REST through the proxy
        print("(c) REST and health through the proxy")
        statuses = [s for _, s, _ in rest]
        leaked = 0
        for schema, status, body in rest:
            if status == 200:
                data = json.loads(body)
                items = data.get("results", data) if isinstance(data, dict) else data
                leaked += sum(1 for d in items if d["symbol"] not in labels[schema].symbols)
        logs = [p.text() for p in fleet.procs if p.name.startswith("web")]
        served = [len(re.findall(r"GET /api/v1/decisions/\?limit=20&scaleout=\d+ ", text)) for text in logs]
        checks(
            "REST answers",
            statuses.count(200) == REST_REQUESTS and not leaked,
            f"{statuses.count(200)} of {REST_REQUESTS} were 200, {leaked} decisions of another tenant",
        )
        checks(
            "REST reached both web processes",
            all(n > 0 for n in served) and sum(served) == REST_REQUESTS,
            " + ".join(f"web{i} {n}" for i, n in enumerate(served)) + f" = {sum(served)} (access logs)",
        )
        status, body = _get(proxy_port, "/health/ready")
        checks("/health/ready through the proxy", status == 200, f"{status} {body.decode()[:160]}")

        # --- per-core inputs of the capacity plan
        print("per-core figures (CPU from /proc; this machine's 2 cores also run the client, PostgreSQL, Redis)")

        def web_pids():
            return [
                pid for p in fleet.procs if p.name.startswith("web") for pid in [p.proc.pid, *_pids(parent=p.proc.pid)]
            ]

        def sample(method: str, path: str, body=None) -> dict:
            """CAPACITY_REQUESTS requests from 4 client threads through the proxy (gunicorn's sync
            workers close after each answer: http.client reconnects, the proxy balances)."""
            cap = CpuMeter({"web": web_pids, "postgres": _pg_backends})
            errors = [0]
            lock = threading.Lock()

            def burst(n):
                conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=30)
                for k in range(n):
                    t = tenants[k % len(tenants)]
                    headers = {"Authorization": f"Api-Key {t.key}", "Content-Type": "application/json"}
                    conn.request(method, path, body=body(t) if body else None, headers=headers)
                    r = conn.getresponse()
                    r.read()
                    if r.status >= 300:
                        with lock:
                            errors[0] += 1
                conn.close()

            cap.start()
            t0 = time.perf_counter()
            threads = [threading.Thread(target=burst, args=(CAPACITY_REQUESTS // 4,)) for _ in range(4)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            took = time.perf_counter() - t0
            cpu = cap.stop()
            n = CAPACITY_REQUESTS // 4 * 4
            out = {
                "rps": n / took,
                "errors": errors[0],
                "web_cpu_ms": cpu.get("web", 0) / n * 1000,
                "pg_cpu_ms": cpu.get("postgres", 0) / n * 1000,
            }
            print(
                f"  {method} {path:<28} {out['rps']:5.0f} req/s, {out['errors']} errors; CPU per request: "
                f"web {out['web_cpu_ms']:5.1f} ms, PostgreSQL {out['pg_cpu_ms']:4.1f} ms"
            )
            return out

        print(f"  {CAPACITY_REQUESTS} requests each, 4 client threads through the proxy, API keys of both tenants:")
        figures = {
            "rest": {
                "tenant": sample("GET", "/api/v1/tenant/"),
                "decisions_list": sample("GET", "/api/v1/decisions/?limit=20"),
                "decision_post": sample(
                    "POST", "/api/v1/decisions/", lambda t: json.dumps({"symbol": t.symbols[1]}).encode()
                ),
            },
            "stream_cpu_ms_per_decision": used.get("streams", 0) / max(total, 1) * 1000,
            "stream_pg_cpu_ms_per_decision": used.get("postgres", 0) / max(total, 1) * 1000,
            "ws_p50_ms": pct(steady, 0.5) if steady else None,
            "ws_p99_ms": pct(steady, 0.99) if steady else None,
            "global_order_inversions": inversions,
            "cursor_order_inversions": cursor_inversions,
        }
        f = figures
        print(
            f"  stream: {f['stream_cpu_ms_per_decision']:.1f} ms consumer CPU + "
            f"{f['stream_pg_cpu_ms_per_decision']:.1f} ms "
            "PostgreSQL CPU per decision (the whole feed, with each process's load and warm-up of 8 series; "
            "the stream bench measures the steady rate)"
        )
        result["figures"] = figures
        stats_line = None
        proxy.stop(signal.SIGTERM, 10)
        for line in proxy.text().splitlines():
            if line.startswith("{"):
                stats_line = json.loads(line)
        if stats_line:
            print(f"  proxy connections per backend: {stats_line}")
            result["proxy"] = stats_line
    except Exception as exc:
        checks("run", False, f"{type(exc).__name__}: {exc}")
        for p in fleet.procs:
            if p.proc.poll() is not None and p.proc.returncode not in (0, -signal.SIGTERM):
                print(f"--- {p.name} (exit {p.proc.returncode}):\n{p.tail()}")
    finally:
        if ws is not None:
            ws.stop()
        fleet.stop_all()
        left = [p.name for p in fleet.procs if p.proc.poll() is None]
        checks("every process stopped", not left, f"{len(fleet.procs)} started, {len(left)} left {left or ''}".strip())
        connection.set_schema_to_public()
        _clear_redis([t.tenant.schema_name for t in tenants])
        for t in tenants:
            Tenant.objects.get(pk=t.tenant.pk).delete(force_drop=True)
    result["passed"] = checks.passed
    print(f"scale-out: {'all checks passed' if checks.passed else 'FAILED'} ({len(checks.rows)} checks)", flush=True)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Run 2 of each server behind a proxy on loopback and check it.")
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("SCALEOUT_PORT_BASE", "0") or 0))
    parser.add_argument("--json", action="store_true", help="Print the result as one JSON line at the end.")
    a = parser.parse_args(argv)
    result = run(a.port_base)
    if a.json:
        print("RESULT " + json.dumps(result, default=str), flush=True)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
