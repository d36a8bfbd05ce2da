"""Tenant scale (issue 14, part 6): what changes when a database holds 500 tenants instead of one.

Run against DATABASE_URL (migrated, as ``make migrate`` leaves it)::

    python -m benchmarks.tenants [--count 500] [--requests 1000] [--signups 5] [--drop]
    make scale-tenants SCALE_TENANTS=500          # the same, with --drop

``make bench`` runs it with 50 tenants (BENCH_TENANTS). Figures only, never pass/fail; the targets
are printed next to them. What it does, in this order:

1. one *bench tenant* (enterprise plan, 2,000 stored hourly bars of the synthetic market, a
   ``trade``-scope API key; no deployed model, so the ML agent abstains);
2. with only that tenant (plus whatever the database already had): ``POST /api/v1/decisions/`` for
   it, in-process through the whole Django stack (Django test client: middleware, API-key
   resolution, DRF, the service; no sockets), p50/p99 over ``--requests`` timed requests; the public
   web sign-up (``POST /accounts/signup/`` and the ``GET /app/`` it redirects to), ``--signups``
   times; the size of PostgreSQL's catalog (pg_class rows, pg_class + pg_attribute bytes);
3. ``--count`` tenants created one by one through ``tenants.services.tenant_provision`` (the
   template-schema clone every sign-up and ``provision_tenant`` use), each timed;
4. the same decision, sign-up and catalog figures with them present. Before the decisions every
   tenant's own key makes one tenant-schema request (``GET /api/v1/decisions/``), so the
   per-process caches (tenant resolution, ...) and the connection's catalog caches hold every
   tenant, as in a process serving all of them (the 1-tenant run does the same for its one);
5. ``manage.py migrate_schemas --tenant`` in a subprocess, django-tenants' ``standard`` executor and
   its ``multiprocessing`` one (TENANT_MULTIPROCESSING_MAX_PROCESSES, 2 by default), with nothing
   to migrate and with one trivial pending migration (``CREATE TABLE``). That migration never
   touches the source tree: it lives in a temporary copy of riskcore's migrations package that a
   temporary settings module names in MIGRATION_MODULES; its table and django_migrations row are
   removed from every schema afterwards, whatever happens;
6. with ``--drop``: every tenant (and sign-up user) the run created but the bench tenant deleted,
   the bench tenant's decisions measured once more (a second 1-tenant baseline: on a shared machine
   the load moves between measurements), then the bench tenant deleted too and no schema of the
   run left; then a table of the figures.

Each decision and sign-up figure also gives the CPU time it took (this process's thread, and the
database's backends when PostgreSQL runs on this machine): wall-clock percentiles on a shared
2-core machine move with other people's load, CPU per request much less.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

ROOT = Path(__file__).resolve().parent.parent
SYMBOL = "SCALE"
TIMEFRAME = "1h"
BARS = 2_000
WARMUP_REQUESTS = 30
DECISION_RATIO_TARGET = 1.2
SIGNUP_TARGET_S = 2.0
PROBE_APP = "riskcore"
PROBE_MIGRATION = "9999_scale_probe"
PROBE_TABLE = "scale_probe"
PASSWORD = "scale-bench-passphrase-71"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


@dataclass
class Figures:
    count: int
    present_before: int = 0
    present: dict[str, int] = field(default_factory=dict)  # "1" / "N" -> tenants present when measured
    create: list[float] = field(default_factory=list)
    decisions: dict[str, DecisionRun] = field(default_factory=dict)  # "1" / "N" / "1 after" -> run
    signups: dict[str, SignupRun] = field(default_factory=dict)
    catalog: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # pg_class rows, bytes, db bytes
    migrate: dict[str, float] = field(default_factory=dict)
    schemas_migrated: int = 0
    drop_s: float | None = None
    dropped: int = 0
    left: int | None = None


# ----------------------------------------------------------------------------- database facts


def catalog_size() -> tuple[int, int, int]:
    """pg_class rows, bytes of pg_class + pg_attribute (with their indexes), database bytes."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_class), "
            "pg_total_relation_size('pg_catalog.pg_class') + pg_total_relation_size('pg_catalog.pg_attribute'), "
            "pg_database_size(current_database())"
        )
        return cur.fetchone()


def tenant_count() -> int:
    from tenants.models import Tenant

    return Tenant.objects.exclude(status=Tenant.Status.TEMPLATE).count()


def schemas_like(prefix: str) -> list[str]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname LIKE %s",
            ["t_" + prefix.replace("-", "_").replace("_", r"\_") + r"\_%"],
        )
        return [r[0] for r in cur.fetchall()]


# ----------------------------------------------------------------------------- the bench tenant


def bench_tenant_create(slug: str):
    from django.db import connection
    from django_tenants.utils import schema_context

    from marketdata import services as md_services
    from marketdata.synthetic import as_csv, generate_bars
    from marketdata.validation import read_table
    from tenants.services import api_key_create, tenant_provision

    tenant, _ = tenant_provision(slug=slug, plan="enterprise")
    _, trade_key = api_key_create(tenant=tenant, name="scale trade", scopes=["trade"], created_by=None)
    _, read_key = api_key_create(tenant=tenant, name="scale read", scopes=["read"], created_by=None)
    with schema_context(tenant.schema_name):
        raw = read_table(as_csv(generate_bars(BARS, timeframe=TIMEFRAME, seed=11, planted_signal=0.05)), "csv")
        md_services.bars_import(tenant=tenant, symbol=SYMBOL, timeframe=TIMEFRAME, raw=raw)
    connection.set_schema_to_public()
    return tenant, trade_key, read_key


# ----------------------------------------------------------------------------- measurements


def touch_tenants(keys: list[str]) -> None:
    """One tenant-schema request per key: resolution caches and the connection's catalog caches
    then know every tenant."""
    from rest_framework.test import APIClient

    client = APIClient()
    for key in keys:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        r = client.get("/api/v1/decisions/?limit=1")
        assert r.status_code == 200, (r.status_code, r.content[:300])


@dataclass
class DecisionRun:
    wall: list[float]  # seconds per request
    cpu: list[float]  # this process's CPU seconds per request (client + Django; the load of others left out)
    postgres_cpu_ms: float | None  # CPU ms of the database's backends per request (local server only)
    load: str


def decisions_time(trade_key: str, requests: int) -> DecisionRun:
    from rest_framework.test import APIClient

    from benchmarks.live import CpuMeter, _pg_backends

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {trade_key}")
    body = f'{{"symbol": "{SYMBOL}"}}'
    for _ in range(WARMUP_REQUESTS):
        r = client.post("/api/v1/decisions/", body, content_type="application/json")
        assert r.status_code == 201, (r.status_code, r.content[:300])
    gc.collect()
    wall, cpu = [], []
    meter = CpuMeter({"postgres": _pg_backends})
    meter.start()
    for _ in range(requests):
        c, t = time.thread_time(), time.perf_counter()
        r = client.post("/api/v1/decisions/", body, content_type="application/json")
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
        assert r.status_code == 201, (r.status_code, r.content[:300])
    used = meter.stop().get("postgres")
    return DecisionRun(wall, cpu, used / requests * 1000 if used is not None else None, _load())


@dataclass
class SignupRun:
    wall: list[float]
    cpu_ms: float  # this process's CPU per sign-up (Django, password hashing)
    postgres_cpu_ms: float | None  # the database's backends' CPU per sign-up (the schema clone)
    load: str


def signups_time(prefix: str, label: str, n: int) -> SignupRun:
    """The public web sign-up as a browser does it: the form POST, then the page it redirects to."""
    from django.test import Client

    from benchmarks.live import CpuMeter, _pg_backends

    times = []
    meter = CpuMeter({"postgres": _pg_backends})
    meter.start()
    cpu = time.thread_time()
    for i in range(n):
        slug = f"{prefix}-su{label}{i}"
        form = {
            "full_name": "Scale Bench",
            "email": f"{slug}@scale.test",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "name": f"Scale {slug}",
            "slug": slug,
            "plan": "free",
        }
        client = Client()
        t = time.perf_counter()
        r = client.post("/accounts/signup/", form)
        assert r.status_code == 302, (r.status_code, r.content[:500])
        page = client.get(r["Location"])
        times.append(time.perf_counter() - t)
        assert page.status_code == 200, page.status_code
    cpu = time.thread_time() - cpu
    pg = meter.stop().get("postgres")
    return SignupRun(times, cpu / max(n, 1) * 1000, pg / max(n, 1) * 1000 if pg is not None else None, _load())


def tenants_create(prefix: str, count: int, figures: Figures, progress: bool) -> list[str]:
    from django.db import connection

    from tenants.services import tenant_provision

    keys = []
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        _, key = tenant_provision(slug=f"{prefix}-{i}", plan="free")
        figures.create.append(time.perf_counter() - t)
        keys.append(key)
        if progress and (i + 1) % 50 == 0:
            last = figures.create[-50:]
            print(
                f"  ... {i + 1} tenants in {time.perf_counter() - started:.0f} s, the last 50 p50 "
                f"{pct(last, 0.5) * 1000:.0f} ms ({_load()})",
                flush=True,
            )
    connection.set_schema_to_public()
    return keys


# ----------------------------------------------------------------------------- migrate_schemas


def _probe_settings(directory: Path) -> dict[str, str]:
    """A settings module and a copy of PROBE_APP's migrations plus one pending migration, in a
    temporary directory: the environment a ``manage.py`` subprocess needs to see it."""
    from django.apps import apps
    from django.db.migrations.loader import MigrationLoader

    leaf = sorted(MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes(PROBE_APP))[0][1]
    source = Path(apps.get_app_config(PROBE_APP).path) / "migrations"
    package = directory / "scale_probe_migrations"
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / f"{PROBE_MIGRATION}.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = [({PROBE_APP!r}, {leaf!r})]\n"
        f"    operations = [migrations.RunSQL('CREATE TABLE {PROBE_TABLE} (id integer)', "
        f"'DROP TABLE {PROBE_TABLE}')]\n"
    )
    (directory / "scale_probe_settings.py").write_text(
        "from config.settings import *  # noqa: F403\n\n"
        f"MIGRATION_MODULES = {{{PROBE_APP!r}: 'scale_probe_migrations'}}\n"
    )
    path = os.pathsep.join(filter(None, [str(directory), str(ROOT), os.environ.get("PYTHONPATH")]))
    return {"DJANGO_SETTINGS_MODULE": "scale_probe_settings", "PYTHONPATH": path}


def probe_remove() -> int:
    """The probe's table and django_migrations row out of every tenant schema (and the template);
    returns in how many schemas it was found."""
    from django.db import connections

    from tenants.db import roles
    from tenants.models import Tenant

    found = 0
    schemas = list(Tenant.objects.values_list("schema_name", flat=True))
    with roles.owner_atomic() as alias, connections[alias].cursor() as cur:
        cur.execute(
            "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = ANY(%s)",
            [PROBE_TABLE, schemas],
        )
        with_table = [r[0] for r in cur.fetchall()]
        found = len(with_table)
        for schema in with_table:
            cur.execute(f"DROP TABLE IF EXISTS {roles.quote(schema)}.{PROBE_TABLE}")
        for schema in schemas:
            cur.execute(
                f"DELETE FROM {roles.quote(schema)}.django_migrations WHERE app = %s AND name = %s",
                [PROBE_APP, PROBE_MIGRATION],
            )
    return found


def migrate_time(executor: str, env: dict[str, str] | None = None) -> float:
    argv = [sys.executable, "manage.py", "migrate_schemas", "--tenant", "-v", "0", f"--executor={executor}"]
    t = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, **(env or {})), capture_output=True, text=True)
    took = time.perf_counter() - t
    if done.returncode:
        raise RuntimeError(f"migrate_schemas --executor={executor} failed:\n{done.stderr[-2000:]}")
    return took


def migrations_measure(figures: Figures) -> None:
    from tenants.models import Tenant

    figures.schemas_migrated = Tenant.objects.count()
    for executor in ("standard", "multiprocessing"):
        figures.migrate[f"{executor}, nothing pending"] = migrate_time(executor)
    with tempfile.TemporaryDirectory(prefix="scale-probe-") as tmp:
        env = _probe_settings(Path(tmp))
        try:
            for executor in ("standard", "multiprocessing"):
                probe_remove()
                figures.migrate[f"{executor}, 1 pending"] = migrate_time(executor, env)
                applied = probe_remove()
                if applied != figures.schemas_migrated:
                    print(f"  (the pending migration reached {applied} of {figures.schemas_migrated} schemas)")
        finally:
            probe_remove()


# ----------------------------------------------------------------------------- drop


def created_drop(prefix: str, keep: str | None = None) -> tuple[int, float]:
    """Delete every tenant whose slug starts with ``prefix-`` (schemas dropped), but ``keep``, and
    the sign-up users the run made; (tenants dropped, seconds)."""
    from django.db import connection

    from accounts.models import User
    from tenants.models import Tenant

    connection.set_schema_to_public()
    t = time.perf_counter()
    n = 0
    tenants = Tenant.objects.filter(slug__startswith=f"{prefix}-").exclude(status=Tenant.Status.TEMPLATE)
    for tenant in tenants.exclude(slug=keep or ""):
        tenant.delete(force_drop=True)
        n += 1
    User.objects.filter(email__startswith=f"{prefix}-", email__endswith="@scale.test").delete()
    return n, time.perf_counter() - t


# ----------------------------------------------------------------------------- report


def report(f: Figures, prefix: str) -> list[str]:
    n = f.count
    lines = [f"== tenant scale: {n} tenants (run {prefix}; {os.cpu_count()} cores, shared) =="]

    def ms(v):
        return f"{v * 1000:8.1f} ms"

    if f.create:
        lines.append(
            f"tenant creation (tenant_provision)   p50 {ms(pct(f.create, 0.5))}   p99 {ms(pct(f.create, 0.99))}   "
            f"max {ms(max(f.create))}   total {sum(f.create):7.1f} s for {len(f.create)}"
        )
    if len(f.create) >= 20:
        tenth = len(f.create) // 10
        first, last = f.create[:tenth], f.create[-tenth:]
        lines.append(
            f"tenant creation, first {tenth} vs last {tenth}   p50 {ms(pct(first, 0.5))} -> {ms(pct(last, 0.5))}"
        )
    for label, present in f.present.items():
        d = f.decisions.get(label)
        if d:
            pg = f", postgres {d.postgres_cpu_ms:.2f} ms" if d.postgres_cpu_ms is not None else ""
            lines.append(
                f"decision POST /api/v1/decisions/, {present:4d} tenants present"
                f"{' (after --drop)' if 'after' in label else ''}   p50 {ms(pct(d.wall, 0.5))}   "
                f"p99 {ms(pct(d.wall, 0.99))}   over {len(d.wall)}   CPU per request: Django p50 "
                f"{pct(d.cpu, 0.5) * 1000:.2f} / p99 {pct(d.cpu, 0.99) * 1000:.2f} ms{pg}   ({d.load})"
            )
    one, many = f.decisions.get("1"), f.decisions.get("N")
    if one and many:
        ratio = pct(many.wall, 0.99) / pct(one.wall, 0.99)
        r50 = pct(many.wall, 0.5) / pct(one.wall, 0.5)
        cpu99 = pct(many.cpu, 0.99) / pct(one.cpu, 0.99)
        verdict = "met" if ratio <= DECISION_RATIO_TARGET else "MISSED"
        lines.append(
            f"decision p99 ratio {f.present['N']} tenants / {f.present['1']}   {ratio:5.2f}x   (p50 {r50:.2f}x; "
            f"Django CPU p99 {cpu99:.2f}x; target <= {DECISION_RATIO_TARGET}x) -> {verdict}"
        )
    for label, present in f.present.items():
        s = f.signups.get(label)
        if s and s.wall:
            verdict = "met" if max(s.wall) <= SIGNUP_TARGET_S else "MISSED"
            pg = f" + postgres {s.postgres_cpu_ms:.0f} ms" if s.postgres_cpu_ms is not None else ""
            lines.append(
                f"sign-up (POST /accounts/signup/ + GET /app/), {present:4d} tenants present   "
                f"p50 {ms(pct(s.wall, 0.5))}   max {ms(max(s.wall))}   over {len(s.wall)}   "
                f"CPU per sign-up: Django {s.cpu_ms:.0f} ms{pg}   (target <= {SIGNUP_TARGET_S:.0f} s) -> {verdict}   "
                f"({s.load})"
            )
    for label, present in f.present.items():
        c = f.catalog.get(label)
        if c:
            lines.append(
                f"catalog, {present:4d} tenants present   pg_class {c[0]:8,d} rows   "
                f"pg_class + pg_attribute {c[1] / 1e6:7.1f} MB   database {c[2] / 1e6:8.1f} MB"
            )
    for label, seconds in f.migrate.items():
        lines.append(
            f"migrate_schemas --tenant, {label:<28} {seconds:7.1f} s   over {f.schemas_migrated} schemas "
            f"({seconds / max(f.schemas_migrated, 1) * 1000:.0f} ms each, process start included)"
        )
    if f.drop_s is not None:
        lines.append(f"drop (--drop)   {f.dropped} tenants in {f.drop_s:.1f} s; schemas of this run left: {f.left}")
    return lines


# ----------------------------------------------------------------------------- entry points


def run(
    *,
    count: int,
    requests: int,
    signups: int,
    drop: bool,
    prefix: str | None = None,
    migrate: bool = True,
    progress: bool = True,
) -> list[str]:
    import django

    django.setup()
    from django.db import connection

    from tenants.services import SLUG_RE, tenant_template_ensure

    prefix = prefix or f"scale{int(time.time()) % 10**7}"
    if not SLUG_RE.match(f"{prefix}-{count}") or len(prefix) > 24:
        raise SystemExit(f"--prefix {prefix!r}: use up to 24 lowercase letters and digits, starting with a letter")
    f = Figures(count=count)
    tenant_template_ensure()
    f.present_before = tenant_count()
    print(
        f"tenant scale run {prefix}: {count} tenants, {requests} timed decisions and {signups} sign-ups per "
        f"measurement; {f.present_before} tenants present before ({_load()})",
        flush=True,
    )
    try:
        t = time.perf_counter()
        bench, trade_key, read_key = bench_tenant_create(f"{prefix}-bench")
        print(f"  bench tenant {bench.slug} with {BARS:,} bars in {time.perf_counter() - t:.1f} s", flush=True)

        f.present["1"] = tenant_count()
        f.catalog["1"] = catalog_size()
        touch_tenants([read_key])
        f.decisions["1"] = decisions_time(trade_key, requests)
        f.signups["1"] = signups_time(prefix, "a", signups)
        connection.set_schema_to_public()
        print(f"  1 tenant measured ({_load()}); creating {count} ...", flush=True)

        keys = tenants_create(prefix, count, f, progress)
        f.present["N"] = tenant_count()
        f.catalog["N"] = catalog_size()
        touch_tenants([read_key, *keys])
        f.decisions["N"] = decisions_time(trade_key, requests)
        f.signups["N"] = signups_time(prefix, "b", signups)
        connection.set_schema_to_public()
        print(f"  {count} tenants measured ({_load()})", flush=True)

        if migrate:
            migrations_measure(f)
        if drop:  # back to one tenant: its decisions again, a second baseline at the run's end
            f.dropped, f.drop_s = created_drop(prefix, keep=bench.slug)
            connection.set_schema_to_public()
            f.present["1 after"] = tenant_count()
            touch_tenants([read_key])
            f.decisions["1 after"] = decisions_time(trade_key, requests)
    finally:
        connection.set_schema_to_public()
        if drop:
            n, _ = created_drop(prefix)
            f.dropped += n
            f.left = len(schemas_like(prefix))
    lines = report(f, prefix)
    if not drop:
        lines.append(f"(tenants kept: drop them with python -m benchmarks.tenants --drop-only --prefix {prefix})")
    return lines


def bench_tenants(count: int | None = None) -> None:
    """``make bench``: a smaller run (BENCH_TENANTS, 50 by default), its tenants dropped."""
    count = count or int(os.environ.get("BENCH_TENANTS", "50"))
    for line in run(count=count, requests=300, signups=3, drop=True, progress=False):
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tenants", description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=500, help="tenants to create (500)")
    p.add_argument("--requests", type=int, default=1000, help="timed decisions per measurement (1000)")
    p.add_argument("--signups", type=int, default=5, help="timed sign-ups per measurement (5)")
    p.add_argument("--drop", action="store_true", help="delete what the run created at the end")
    p.add_argument("--prefix", default=None, help="slug prefix of the run's tenants (default: scale<time>)")
    p.add_argument("--no-migrate", action="store_true", help="skip the migrate_schemas runs")
    p.add_argument("--drop-only", action="store_true", help="only delete the tenants of run --prefix")
    args = p.parse_args(argv)
    if args.drop_only:
        if not args.prefix:
            p.error("--drop-only needs --prefix")
        import django

        django.setup()
        n, seconds = created_drop(args.prefix)
        left = len(schemas_like(args.prefix))
        print(f"dropped {n} tenants of run {args.prefix} in {seconds:.1f} s; schemas left: {left}")
        return 0
    lines = run(
        count=args.count,
        requests=args.requests,
        signups=args.signups,
        drop=args.drop,
        prefix=args.prefix,
        migrate=not args.no_migrate,
    )
    for line in lines:
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
