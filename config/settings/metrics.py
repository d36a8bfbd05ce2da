"""``/metrics`` (Prometheus text, ops/metrics.py; docs/observability.md "Metrics")."""

from .base import DATA_DIR
from .env import env_bool, env_int, env_str

# Every process (gunicorn workers, daphne, the edge, Celery, the stream) writes its figures here
# (prometheus_client's multiprocess mode), so any web worker's /metrics reports them all. `make run`
# empties it before starting the processes. Empty: single-process mode (only this process's figures).
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "prometheus"))
# a scraper's bearer token (compared in constant time); empty: no token is accepted
METRICS_TOKEN = env_str("METRICS_TOKEN")
# requests from 127.0.0.1/::1 without a proxy header may scrape without a token. Off by default:
# behind a reverse proxy on the same host every request comes from loopback.
METRICS_ALLOW_LOOPBACK = env_bool("METRICS_ALLOW_LOOPBACK", False)
# scrape-time figures per tenant (WebSocket connections, stream backlog, model live accuracy) name
# at most this many tenants (the largest by that figure); the rest are summed as tenant="other"
METRICS_TENANT_CAP = env_int("METRICS_TENANT_CAP", 20)
# the scrape-time figures are read at most this often per process (seconds)
METRICS_COLLECT_CACHE_S = env_int("METRICS_COLLECT_CACHE_S", 5)
