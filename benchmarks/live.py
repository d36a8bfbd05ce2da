"""Live decisions through the real servers (issue 7): REST ``POST /api/v1/decisions/`` under
gunicorn and the ``ws/decisions/`` feed on its edge server (intelligence/edge.py), each next to a
floor measured by the same client in the same run (on 2 shared cores the client's own cost is part of every figure).

Run alone with ``python -m benchmarks.live [rest] [feed]`` (both by default); ``make bench`` calls
:func:`bench_live`. Figures only, never pass/fail.

REST: open-loop load (:func:`benchmarks.loadgen.open_loop`: fixed timetable, latency from the due
time) from 50 clients against gunicorn started as ``make run`` starts it (``config/gunicorn.conf.py``,
its workers), with a ``trade``-scope API key; floors: the same load against a trivial asyncio HTTP
server and ``GET /health``; then a step search for the highest rate keeping p99 <= 50 ms without
errors; then one request's milliseconds, in-process, by stage. Each run also prints the CPU time
per answered request of the server, its PostgreSQL backends and the client (from /proc), so a
figure can be told apart from the other work on a shared machine.

Feed: 1,000 clients (one client process, ``Authorization: Api-Key`` header) on the edge server as
the Procfile's ``edge`` line starts it; decisions published through
``intelligence.feed.publish_decisions`` for the bench tenant, each stamped with its publish time;
publish -> receive p50/p99 and lost messages; floor: the same client against a minimal
``websockets.broadcast`` server fed by the same publisher (server and client CPU per decision
printed for both). First the publish itself in this process (:func:`publish_cost`: the
resume log's Lua script per call and per decision).

The bench tenant: enterprise plan, 2,000 stored hourly bars of the seeded synthetic market and a
deployed XGBoost model for the symbol (so each decision includes the model's vote), dropped at the
end.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import IO

from benchmarks.loadgen import http_request, pct, raise_nofile, run_closed_loop, run_open_loop

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

SYMBOL = "BENCH"
TIMEFRAME = "1h"
BARS = 2_000
CLIENTS = 50
RATE = 200  # req/s of the main REST run
RATE_SECONDS = 15.0
FLOOR_SECONDS = 8.0
STEP_SECONDS = 5.0
STEPS = (10, 25, 50, 100, 150, 200, 300, 400, 600, 800, 1000)  # req/s, stop at the first failure
TARGET_P99_MS = 10.0
STEP_P99_MS = 50.0
PROFILE_REQUESTS = 300

WS_CLIENTS = 1_000
WS_MESSAGES = 20
WS_INTERVAL = 1.0  # s between published decisions (CONVENTIONS §4 measured one a second)
WS_TARGET_RATIO = 1.5


# ----------------------------------------------------------------------------- processes


def _free_port() -> int:
    """A free loopback port: from ``BENCH_PORTS`` (``18500-18599``) when set, so runs on a shared
    machine stay in the range given to them, else any the kernel picks."""
    span = os.environ.get("BENCH_PORTS", "")
    if span:
        low, _, high = span.partition("-")
        for port in range(int(low), int(high or low) + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                if port not in _handed_out:
                    _handed_out.add(port)  # bound by a child only later: never hand it out twice
                    return port
        raise RuntimeError(f"no free port in BENCH_PORTS={span}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_handed_out: set[int] = set()


def _wait_port(port: int, proc: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {seconds:.0f} s")


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen
    log: IO[str]

    def tail(self, lines: int = 15) -> str:
        self.log.flush()
        with open(self.log.name, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def _start(name: str, argv: list[str], port: int, env: dict | None = None, ready_line: bool = False) -> Server:
    log = tempfile.NamedTemporaryFile("w+", prefix=f"bench-{name}-", suffix=".log")
    proc = subprocess.Popen(
        argv,
        env=dict(os.environ, **(env or {})),
        stdout=subprocess.PIPE if ready_line else log,
        stderr=log,
        text=True,
    )
    server = Server(name, port, proc, log)
    try:
        if ready_line:
            line = proc.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"{name} did not start: {line!r}\n{server.tail()}")
        _wait_port(port, proc)
    except Exception:
        server.stop()
        raise
    return server


def start_gunicorn() -> Server:
    """gunicorn as the Procfile's ``web`` runs it (its config, its worker count), on a free port."""
    port = _free_port()
    argv = [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py"]
    return _start("gunicorn", argv, port, {"HTTP_PORT": str(port)})


def start_edge() -> Server:
    """The decision feed's edge server as the Procfile's ``edge`` runs it, on a free port."""
    port = _free_port()
    return _start("edge", [sys.executable, "manage.py", "run_feed_edge", "--port", str(port)], port)


def _loadgen(name: str, *args: str) -> Server:
    port = _free_port()
    argv = [sys.executable, "-m", "benchmarks.loadgen", name, "--port", str(port), *args]
    return _start(name, argv, port, ready_line=True)


class CpuMeter:
    """CPU time (user + system, from /proc) that groups of processes spend between two snapshots:
    it says which process a figure is made of, even with other work on the machine."""

    def __init__(self, groups: dict[str, object]):
        self.groups = groups  # label -> callable returning the pids of that group now
        self.before: dict[str, dict[int, float]] = {}

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _snapshot(self) -> dict[str, dict[int, float]]:
        out = {}
        for label, pids in self.groups.items():
            out[label] = {pid: cpu for pid in pids() if (cpu := self._cpu(pid)) is not None}
        return out

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self) -> dict[str, float]:
        """CPU seconds per group since :meth:`start` (processes born since count whole); a group
        with no process (e.g. PostgreSQL on another machine) is left out."""
        after = self._snapshot()
        return {
            label: sum(cpu - self.before[label].get(pid, 0.0) for pid, cpu in now.items())
            for label, now in after.items()
            if now or self.before[label]
        }


def _pids(*, parent: int | None = None, title: re.Pattern[bytes] | None = None) -> list[int]:
    """Processes whose parent is ``parent`` or whose command line (title) matches ``title``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if parent is not None:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == parent:
                        found.append(int(entry))
            elif title is not None:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if title.match(fh.read()):
                        found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _pg_backends() -> list[int]:
    """The PostgreSQL backends of the bench's user and database (a local server titles them
    ``postgres: [<cluster>: ]<user> <database> <client> <state>``); none when it runs elsewhere."""
    from django.db import connection

    db = connection.settings_dict
    user, name = (re.escape(db[k].encode()) for k in ("USER", "NAME"))
    return _pids(title=re.compile(rb"postgres: (?:\S+: )?" + user + b" " + name + b" "))


# ----------------------------------------------------------------------------- the bench tenant


@dataclass
class BenchTenant:
    tenant: object
    trade_key: str
    read_key: str
    model: str | None


@contextlib.contextmanager
def bench_tenant():
    """An enterprise tenant with stored bars and a deployed XGBoost model for ``SYMBOL``."""
    import django

    django.setup()
    from django.db import connection
    from django_tenants.utils import schema_context

    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from tenants.models import Tenant
    from tenants.services import api_key_create, tenant_provision

    slug = f"benchlive{int(time.time())}"
    t = time.perf_counter()
    tenant, _ = tenant_provision(slug=slug, plan="enterprise")
    try:
        _, trade_key = api_key_create(tenant=tenant, name="bench trade", scopes=["trade"], created_by=None)
        _, read_key = api_key_create(tenant=tenant, name="bench read", scopes=["read"], created_by=None)
        with schema_context(tenant.schema_name):
            raw = read_table(as_csv(generate_bars(BARS, timeframe=TIMEFRAME, seed=11, planted_signal=0.05)), "csv")
            md_services.bars_import(tenant=tenant, symbol=SYMBOL, timeframe=TIMEFRAME, raw=raw)
            model = _deploy_model(tenant)
        connection.set_schema_to_public()
        print(
            f"(bench tenant {slug}: {BARS:,} {TIMEFRAME} bars of {SYMBOL}, model {model or 'none'}, "
            f"set up in {time.perf_counter() - t:.1f} s)",
            flush=True,
        )
        yield BenchTenant(tenant=tenant, trade_key=trade_key, read_key=read_key, model=model)
    finally:
        connection.set_schema_to_public()
        Tenant.objects.get(slug=slug).delete(force_drop=True)


def _deploy_model(tenant) -> str | None:
    """A small XGBoost model trained on the bars and made production, as a tenant would have."""
    try:
        from models_registry.services import model_deploy, model_settings_update
        from models_registry.services.training import training_job_create, training_job_run

        job, _ = training_job_create(
            tenant=tenant,
            actor="bench",
            model_name="bench",
            symbol=SYMBOL,
            timeframe=TIMEFRAME,
            families=["xgboost"],
            n_trials=2,
            enqueue=False,
        )
        training_job_run(job_id=job.pk)
        job.refresh_from_db()
        version = job.model_version
        model_settings_update(model=version.model, deploy_policy={"gate": "none"})
        model_deploy(model=version.model, version=version)
        return version.ref
    except Exception as e:  # noqa: BLE001 - the bench still runs, the ML agent then abstains
        print(f"(no model: {type(e).__name__}: {e})")
        return None


# ----------------------------------------------------------------------------- REST


def bench_rest(bt: BenchTenant) -> None:
    body = json.dumps({"symbol": SYMBOL}).encode()
    headers = {"Authorization": f"Api-Key {bt.trade_key}", "Content-Type": "application/json"}
    decide = http_request("POST", "/api/v1/decisions/", body=body, headers=headers)
    health = http_request("GET", "/health")
    raw = _loadgen("http-server")
    web = start_gunicorn()
    me = os.getpid()
    meters = {
        raw.port: CpuMeter({"server": lambda: [raw.proc.pid], "client": lambda: [me]}),
        web.port: CpuMeter(
            {"gunicorn": lambda: _pids(parent=web.proc.pid), "postgres": _pg_backends, "client": lambda: [me]}
        ),
    }

    cpu_per_request: dict[str, float] = {}

    def load(port: int, payload: bytes, rate: float, seconds: float, label: str, cpu: bool = True):
        meters[port].start()
        result = run_open_loop(port, payload, rate=rate, clients=CLIENTS, seconds=seconds)
        used = meters[port].stop()
        cpu_per_request.clear()
        cpu_per_request.update({name: seconds / max(result.ok, 1) * 1000 for name, seconds in used.items()})
        print("  " + result.line(label), flush=True)
        if cpu and result.ok:
            per = ", ".join(f"{name} {ms:.2f}" for name, ms in cpu_per_request.items())
            print(f"  {'':<32} CPU ms per answered request: {per}", flush=True)
        if port == web.port:
            # what an overloaded run left queued is served before the next run: a /health answer
            # has passed every connection accepted before it
            run_closed_loop(web.port, health, clients=1, requests=3)
        return result

    try:
        # every worker loads the pipeline, feature cache and model before anything is timed
        statuses = run_closed_loop(web.port, decide, clients=4, requests=10)
        workers = len(_pids(parent=web.proc.pid))
        if set(statuses) != {201}:
            print(f"warm-up statuses {sorted(set(statuses))}:\n{web.tail()}")
        gc.collect()
        gc.freeze()
        print(f"REST open loop, {CLIENTS} clients, latency from each request's scheduled send time:")
        load(raw.port, decide, RATE, FLOOR_SECONDS, "floor: trivial asyncio server")
        load(web.port, health, RATE, FLOOR_SECONDS, "floor: GET /health, gunicorn")
        main = load(web.port, decide, RATE, RATE_SECONDS, "POST /api/v1/decisions/")
        main_cpu = dict(cpu_per_request)
        verdict = "met" if main.p(0.99) <= TARGET_P99_MS and not main.failed else "MISSED"
        print(f"  target p99 <= {TARGET_P99_MS:.0f} ms at {RATE} req/s: p99 {main.p(0.99):.1f} ms -> {verdict}")
        if main.failed and set(main.errors) - {"unfinished"}:
            print("  (gunicorn log tail)\n" + web.tail(5))
        best = None
        for rate in STEPS:
            step = load(web.port, decide, rate, STEP_SECONDS, f"step {rate} req/s", cpu=False)
            if step.failed or step.p(0.99) > STEP_P99_MS:
                break
            best = rate
        shown = f"{best} req/s" if best else f"< {STEPS[0]} req/s"
        print(f"  highest rate with p99 <= {STEP_P99_MS:.0f} ms and no errors, {STEP_SECONDS:.0f} s steps: {shown}")
    finally:
        web.stop()
        raw.stop()
        gc.unfreeze()
    in_process_ms = profile_decision(bt)
    server_cpu = main_cpu.get("gunicorn", 0.0) + main_cpu.get("postgres", 0.0)
    cores = os.cpu_count() or 1
    if server_cpu and workers:
        print(
            f"  => ceilings: {server_cpu:.1f} ms CPU per decision (gunicorn + postgres) on {cores} cores: "
            f"<= {cores * 1000 / server_cpu:.0f} req/s; {workers} sync workers x {in_process_ms:.1f} ms: "
            f"<= {workers * 1000 / in_process_ms:.0f} req/s; {RATE} req/s at p99 <= {TARGET_P99_MS:.0f} ms "
            f"needs a decision well under {cores * 1000 / RATE:.0f} ms of CPU, client included"
        )


class Breakdown:
    """Exclusive time per stage: wrapped callables (and every SQL statement) add their own time
    minus that of wrapped callables inside them, so the stages add up to the tracked total."""

    def __init__(self):
        self.stack: list[float] = []
        self.exclusive: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list = []

    def _enter(self):
        self.stack.append(0.0)
        return time.perf_counter()

    def _leave(self, label: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        children = self.stack.pop()
        self.exclusive[label] += elapsed - children
        self.calls[label] += 1
        if self.stack:
            self.stack[-1] += elapsed

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:  # the code moved on: that stage is then counted in "other"
            print(f"  (not timed: {getattr(owner, '__name__', owner)}.{name} is gone)")
            return
        own = vars(owner).get(name, _ABSENT)  # what restore() puts back (or removes)

        def timed(*args, **kwargs):
            started = self._enter()
            try:
                return original(*args, **kwargs)
            finally:
                self._leave(label, started)

        setattr(owner, name, staticmethod(timed) if isinstance(own, staticmethod) else timed)
        self._undo.append((owner, name, own))

    def sql(self, execute, sql, params, many, context):
        verb = sql.lstrip().split(None, 1)[0].upper() if sql else "?"
        if verb == "WITH":  # a CTE is a write when it holds one
            verb = "INSERT" if any(w in sql for w in ("INSERT INTO", "UPDATE ", "DELETE FROM")) else "SELECT"
        label = _SQL_LABELS.get(verb, "SQL other (savepoints...)")
        started = self._enter()
        try:
            return execute(sql, params, many, context)
        finally:
            self._leave(label, started)

    def restore(self) -> None:
        for owner, name, own in reversed(self._undo):
            if own is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, own)
        self._undo.clear()


_ABSENT = object()
_SQL_LABELS = {
    "SELECT": "SQL reads",
    "INSERT": "SQL writes",
    "UPDATE": "SQL writes",
    "DELETE": "SQL writes",
    "SET": "SQL SET search_path",
}


def profile_decision(bt: BenchTenant) -> float:
    """Where one decision request's milliseconds go: the whole Django stack in-process (middleware,
    API-key resolution, DRF, the service, JSON), stages timed by wrapping their functions."""
    from django.db import connection, connections
    from rest_framework.renderers import JSONRenderer
    from rest_framework.test import APIClient

    import api.parsers
    import features.selectors
    import intelligence.models
    import intelligence.selectors
    import intelligence.services
    import marketdata.selectors
    import tenants.limits
    import tenants.resolution

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {bt.trade_key}")
    body = json.dumps({"symbol": SYMBOL})
    for _ in range(30):
        r = client.post("/api/v1/decisions/", body, content_type="application/json")
        assert r.status_code == 201, r.content[:300]
    size = len(r.content)

    bd = Breakdown()
    stages = [
        (tenants.resolution, "api_key_resolve", "tenant + API key resolution"),
        (tenants.resolution, "tenant_by_host", "tenant + API key resolution"),
        (tenants.resolution, "tenant_by_id", "tenant + API key resolution"),
        (tenants.limits, "limit_check", "plan limit check (Redis)"),
        (api.parsers.FastJSONParser, "parse", "JSON parse"),
        (intelligence.services, "pipeline_load", "pipeline load (cached 5 s)"),
        (intelligence.selectors, "instrument_with_position", "instrument + position read"),
        (marketdata.selectors, "instrument_get", "bars + features read"),
        (marketdata.selectors, "only_timeframe", "bars + features read"),
        (marketdata.selectors, "bars_frame", "bars + features read"),
        (features.selectors, "stored_features", "bars + features read"),
        (intelligence.services, "agents_feature_set", "bars + features read"),
        (intelligence.services, "model_version_for", "model version resolve"),
        (intelligence.services, "ml_prediction", "model predict"),
        (intelligence.services, "position_state", "position state"),
        (intelligence.services.Pipeline, "decide", "agents + consensus"),
        (intelligence.services, "decision_row", "decision row build"),
        (intelligence.models.Decision, "save", "decision insert + ledger"),
        (intelligence.services, "ledger_apply", "decision insert + ledger"),
        (intelligence.services, "decision_insert_applied", "decision insert + ledger"),
        (intelligence.selectors, "decision_payload", "payload + JSON render"),
        (JSONRenderer, "render", "payload + JSON render"),
        (intelligence.services, "publish_decisions", "feed publish (Redis)"),
        (type(connections["default"]), "_commit", "commit"),
    ]
    other = "Django, DRF, middleware, rest"
    per_request = []
    try:
        for owner, name, label in stages:
            bd.wrap(owner, name, label)
        with connection.execute_wrapper(bd.sql):
            for _ in range(PROFILE_REQUESTS):
                t = time.perf_counter()
                started = bd._enter()
                r = client.post("/api/v1/decisions/", body, content_type="application/json")
                bd._leave(other, started)
                per_request.append(time.perf_counter() - t)
                assert r.status_code == 201, r.content[:300]
    finally:
        bd.restore()
    n = PROFILE_REQUESTS
    total = sum(bd.exclusive.values()) / n * 1000
    statements = sum(v for k, v in bd.calls.items() if k.startswith("SQL")) / n
    print(
        f"one decision in-process (Django test client, no sockets, timers on): mean {total:.2f} ms, "
        f"p50 {pct(per_request, 0.5) * 1000:.2f} ms, p99 {pct(per_request, 0.99) * 1000:.2f} ms over {n}; "
        f"{statements:.1f} SQL statements/request; response {size} bytes. Exclusive time by stage "
        "(SQL round trips count under SQL, not under the stage that issued them):"
    )
    for label, seconds in sorted(bd.exclusive.items(), key=lambda kv: -kv[1]):
        ms = seconds / n * 1000
        print(f"  {label:<32} {ms:6.2f} ms  {ms / total * 100:4.0f}%   ({bd.calls[label] / n:.1f} calls/request)")
    return total


# ----------------------------------------------------------------------------- feed


def _fleet(url: str, key: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "benchmarks.loadgen", "ws-fleet", "--url", url, "--count", str(WS_CLIENTS)]
    argv += ["--header", f"Authorization: Api-Key {key}"]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _read_json(proc: subprocess.Popen, timeout: float) -> dict:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise RuntimeError(f"the WebSocket client process gave no answer in {timeout:.0f} s")
    return json.loads(line)


def _feed_run(label: str, server: Server, path: str, key: str, schema: str, payload: dict, first_id: int) -> dict:
    from intelligence.feed import publish_decisions

    fleet = _fleet(f"ws://127.0.0.1:{server.port}{path}", key)
    meter = CpuMeter({"server": lambda: [server.proc.pid], "client": lambda: [fleet.pid]})
    try:
        hello = _read_json(fleet, 120)
        time.sleep(1.0)  # let the last handshakes settle (consumers subscribed, queues idle)
        meter.start()
        ids = []
        next_at = time.monotonic()
        for i in range(WS_MESSAGES):
            next_at += WS_INTERVAL
            time.sleep(max(0.0, next_at - time.monotonic()))
            ident = first_id + i
            publish_decisions([{**payload, "id": ident, "published_ns": time.monotonic_ns()}], schema)
            ids.append(ident)
        fleet.stdin.write(json.dumps({"ids": ids, "wait_s": 15}) + "\n")
        fleet.stdin.flush()
        out = _read_json(fleet, 60)
        used = meter.stop()
    finally:
        if fleet.poll() is None:
            fleet.stdin.close()
            try:
                fleet.wait(15)
            except subprocess.TimeoutExpired:
                fleet.kill()
    lat = out["latencies_ms"]
    out.update(hello)
    out["p50"], out["p99"], out["max"] = pct(lat, 0.5), pct(lat, 0.99), pct(lat, 1.0)
    print(
        f"  {label:<42} p50 {out['p50']:7.1f} ms   p99 {out['p99']:7.1f} ms   max {out['max']:7.1f} ms   "
        f"lost {out['lost']}   dup {out['duplicates']}   connected {out['ready']}/{WS_CLIENTS} "
        f"in {out['connect_s']:.1f} s" + (f"   closed by server {out['closed']}" if out["closed"] else ""),
        flush=True,
    )
    print(
        f"  {'':<42} CPU ms per decision to {out['ready']} sockets: "
        + ", ".join(f"{name} {seconds / WS_MESSAGES * 1000:.0f}" for name, seconds in used.items()),
        flush=True,
    )
    return out


def publish_cost(schema: str, payload: dict, calls: int = 2000) -> None:
    """``publish_decisions`` in this process: wall and client CPU per call, and the Redis server's
    time per message (its command statistics: the Lua script that appends to the tenant's resume
    log and PUBLISHes), for one decision a call and for batches of 10 (the stream's)."""
    from intelligence import feed

    r = feed._redis()
    for n in (1, 10):
        feed.publish_decisions([payload], schema)  # the script loaded
        r.config_resetstat()
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(calls // n):
            feed.publish_decisions([{**payload, "id": i * n + k + 1} for k in range(n)], schema)
        wall, cpu = (time.perf_counter() - wall) / (calls // n), (time.process_time() - cpu) / (calls // n)
        stats = r.info("commandstats")
        server = sum(v["usec"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_publish"))
        print(
            f"  publish_decisions, {n:>2} a call: wall {wall * 1e6:5.0f} us   client CPU {cpu * 1e6:4.0f} us   "
            f"Redis {server / calls:4.1f} us per decision",
            flush=True,
        )
    r.delete(feed.log_key(schema))


def bench_feed(bt: BenchTenant) -> None:
    from django.db import connection
    from django_tenants.utils import schema_context

    from config.settings.services import REDIS_DB_CHANNELS, redis_db_url
    from intelligence import feed, selectors, services

    raise_nofile()
    with schema_context(bt.tenant.schema_name):
        decision = services.decision_make(tenant=bt.tenant, symbol=SYMBOL)  # a real payload, its real size
        payload = selectors.decision_payload(decision)
    connection.set_schema_to_public()
    floor_schema = f"benchfloor{os.getpid()}"
    size = len(feed.message_text({**payload, "published_ns": time.monotonic_ns()}))
    print(
        f"WebSocket feed: {WS_CLIENTS} clients in one process, {WS_MESSAGES} decisions every "
        f"{WS_INTERVAL * 1000:.0f} ms, {size} bytes each, publish -> receive"
    )
    publish_cost(floor_schema, payload)
    server = start_edge()
    floor = _loadgen(
        "ws-floor", "--redis-url", redis_db_url(REDIS_DB_CHANNELS), "--channel", feed.channel(floor_schema)
    )
    try:
        real = _feed_run(
            "ws/decisions/ edge server (Api-Key header)",
            server,
            "/ws/decisions/",
            bt.read_key,
            bt.tenant.schema_name,
            payload,
            payload["id"] + 1,
        )
        if real["lost"] or real["failed"]:
            print(server.tail())
        base = _feed_run(
            "floor: websockets.broadcast, 1 subscription",
            floor,
            "/",
            bt.read_key,
            floor_schema,
            payload,
            1,
        )
    finally:
        server.stop()
        floor.stop()
        feed._redis().delete(feed.log_key(floor_schema))  # the floor's resume log (the tenant's is kept)
    r50, r99 = real["p50"] / base["p50"], real["p99"] / base["p99"]
    verdict = "met" if max(r50, r99) <= WS_TARGET_RATIO and not real["lost"] else "MISSED"
    print(f"  edge / floor: p50 {r50:.2f}x   p99 {r99:.2f}x   (target <= {WS_TARGET_RATIO}x, 0 lost) -> {verdict}")


# ----------------------------------------------------------------------------- entry points


def bench_live(parts: tuple[str, ...] = ("rest", "feed")) -> None:
    raise_nofile()
    with bench_tenant() as bt:
        if "rest" in parts:
            bench_rest(bt)
        if "feed" in parts:
            bench_feed(bt)


if __name__ == "__main__":
    bench_live(tuple(sys.argv[1:]) or ("rest", "feed"))
