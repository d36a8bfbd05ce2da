# Two commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= $(shell ls -d $$(pyenv root 2>/dev/null)/versions/3.12.*/bin/python3.12 2>/dev/null | tail -1 || true)
ifeq ($(strip $(PYTHON)),)
PYTHON := $(shell command -v python3.12 || true)
endif
VENV := .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py
# make test runs two pytest-xdist workers (a file at a time each; tests/parallel.py gives each its own
# Redis, pytest-django its own database): TEST_WORKERS=0 runs in one process
TEST_WORKERS ?= 2
COV := --cov=tenants --cov=compliance --cov=accounts --cov=api --cov=ops --cov-report=term:skip-covered

.PHONY: install run test test-slow faulttest loadtest soaktest bench screenshots lint stop services migrate demo clean help

# Telegram: with no TELEGRAM_API_BASE in the environment, `make run` (and `make demo`) talk to the local
# sandbox Bot API (Procfile 'telegram', notifications/sandbox.py) on TELEGRAM_SANDBOX_PORT, where the demo
# tenant's bot and chat live; every process gets TELEGRAM_API_BASE through the environment honcho passes on.
TELEGRAM_SANDBOX_PORT ?= 8081
export TELEGRAM_SANDBOX_PORT
ifeq ($(origin TELEGRAM_API_BASE),undefined)
run demo: export TELEGRAM_API_BASE = http://127.0.0.1:$(TELEGRAM_SANDBOX_PORT)
endif

help:
	@echo "make run        start everything (embedded PostgreSQL/Redis if DATABASE_URL/REDIS_URL unset)"
	@echo "make test       full test suite against real PostgreSQL and Redis (what CI runs)"
	@echo "make test-slow  long load, soak and fault runs"
	@echo "make faulttest  fault tests: kill a worker, restart Redis/PostgreSQL, drop WebSockets"
	@echo "make loadtest   REST mix + 1,000 WebSocket clients + the live stream for 120 s, judged (exit 1 if missed)"
	@echo "make soaktest   the same for 30 minutes (LOADTEST_DURATION=1800)"
	@echo "make bench      benchmarks, printing figures"
	@echo "make scaleout   2 web + 2 edge + 2 workers + 2 stream consumers behind a proxy: checks (docs/deploy.md)"
	@echo "make scale-tenants  500 tenants: creation, migrate_schemas, decision p99 and sign-up with 1 vs 500 (dropped after)"
	@echo "make lint       ruff"
	@echo "make stop       stop the embedded PostgreSQL and Redis"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@if [ -z "$(PYTHON)" ]; then echo "Python 3.12 not found: install it (pyenv install 3.12) or pass PYTHON=/path/to/python3.12"; exit 1; fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed

services: install
	$(PY) -m config.embedded start

migrate: install
	$(MANAGE) migrate_schemas --shared -v 0
	$(MANAGE) migrate_schemas --tenant -v 0
	$(MANAGE) ensure_tenant_template
	$(MANAGE) ensure_db_roles

demo: migrate
	$(MANAGE) demo_setup

run: demo
	@$(MANAGE) demo_setup --print
	rm -f "$${PROMETHEUS_MULTIPROC_DIR:-$${DATA_DIR:-.data}/prometheus}"/*.db  # /metrics: figures of this run only
	$(VENV)/bin/honcho -f Procfile start

test: install
	$(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile --durations=15 $(COV) $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && echo "no slow tests yet" && exit 0; exit $$rc

# fault tests (tests/faults/): a worker killed mid-job, Redis and PostgreSQL restarted, WebSockets dropped;
# each prints what it checked. The slow ones also run in test-slow, the fast ones in test.
faulttest: install
	$(PY) -m pytest tests/faults -v $(PYTEST_ARGS)

# load and soak (benchmarks/loadtest.py): the Procfile's servers against its own bench tenant, loopback only, bounded
# by LOADTEST_DURATION (s), LOADTEST_RPS (0: 40 per core), LOADTEST_WS_CLIENTS (1000); prints figures and the
# targets, exit 1 when one is missed. Not in test-slow (tests/ops/test_loadtest.py runs the harness for seconds there).
loadtest: migrate
	$(PY) -m benchmarks.loadtest $(LOADTEST_ARGS)

soaktest: migrate
	LOADTEST_DURATION=$${LOADTEST_DURATION:-1800} $(PY) -m benchmarks.loadtest $(LOADTEST_ARGS)

screenshots: install migrate demo  ## PNG of each main page (desktop + phone) in .data/screenshots/
	$(PY) -m tests.browser.screenshots

bench: install
	$(PY) -m benchmarks $(BENCH_ARGS)

.PHONY: scaleout
# scale-out on loopback (benchmarks/scaleout.py, docs/deploy.md): exits 1 if a check fails
scaleout: migrate
	$(PY) -m benchmarks.scaleout $(SCALEOUT_ARGS)

.PHONY: scale-tenants
# tenant scale (benchmarks/tenants.py, README "Scale: 500 tenants"): SCALE_TENANTS tenants created, measured, dropped
SCALE_TENANTS ?= 500
scale-tenants: migrate
	$(PY) -m benchmarks.tenants --count $(SCALE_TENANTS) --drop $(SCALE_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

stop:
	@[ -x $(PY) ] && $(PY) -m config.embedded stop || echo "nothing to stop (no .venv)"

clean: stop
	rm -rf .data
