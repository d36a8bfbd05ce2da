"""gunicorn serves HTTP (WSGI: 609 req/s here vs 76 under daphne, CONVENTIONS §6); daphne serves /ws/."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('HTTP_PORT', '8000')}"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = 1
worker_class = "sync"
timeout = 30
graceful_timeout = 10
accesslog = "-" if os.environ.get("ACCESS_LOG") else None
preload_app = False


def child_exit(server, worker):
    """A worker's live gauges leave /metrics with it (prometheus_client multiprocess mode)."""
    from pathlib import Path

    data = os.environ.get("DATA_DIR") or str(Path(__file__).resolve().parents[1] / ".data")
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", str(Path(data) / "prometheus"))
    if path and Path(path).is_dir():
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)
