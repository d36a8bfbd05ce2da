"""``make loadtest`` (benchmarks/loadtest.py): the targets are judged as stated, the report lists every
figure, and the harness runs end to end against this session's database (slow: it trains the bench
tenant's model and starts every server of the Procfile)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from benchmarks import loadtest
from benchmarks.loadgen import LoadResult

GOOD = {
    "rest_error_pct": 0.0,
    "rest_failed": 0,
    "rest_scheduled": 1000,
    "ws_lost": 0,
    "ws_expected": 10_000,
    "ws_lost_pct": 0.0,
    "ws_p99": 100.0,
    "floor_p99": 90.0,
    "ws_ratio": 100 / 90,
    "rss_growth_pct": 2.0,
    "rss_growth_group": "gunicorn",
    "duration": 120.0,
    "cores": 2,
    "server_cpu_pct": 40.0,
    "mem_peak_pct": 30.0,
    "dead": "",
}
# one figure just past each target -> the target it must miss
MISSES = [
    ({"rest_error_pct": 0.1, "rest_failed": 1}, "REST error rate"),
    ({"ws_lost_pct": 0.1, "ws_lost": 10}, "WebSocket deliveries lost"),
    ({"ws_ratio": 1.51}, "raw-broadcast floor"),
    ({"rss_growth_pct": 10.0}, "RSS growth"),
    ({"server_cpu_pct": 70.0}, "server CPU"),
    ({"mem_peak_pct": 80.0}, "memory"),
    ({"dead": "stream (exit 1)"}, "every server process"),
]

HEADER = [  # what a run prints before the load, as patterns
    r"load average at start \d+\.\d\d / \d+\.\d\d / \d+\.\d\d",
    r"scaled load: .* planned 40 req/s of this mix per core -> 500 cores, 250 machines .* share 80 req/s",
]
FIGURES = [  # what the report after it must show, as patterns
    *(
        rf"{re.escape(name)}\s+(\d+ %|fixed)\s+[\d.]+/s\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+"
        for name in [n for n, _ in loadtest.MIX] + [loadtest.LOGIN]
    ),
    r"throughput [\d.]+ req/s answered .* error rate \d+\.\d{3} %",
    r"edge ws/decisions/\?symbols=LIVE\s+p50\s+[\d.]+ ms\s+p99\s+[\d.]+ ms",
    r"floor: websockets.broadcast\s+p50\s+[\d.]+ ms\s+p99\s+[\d.]+ ms",
    r"edge / floor p99 [\d.]+x",
    r"live stream: \d+ bars of LIVE decided",
    *(
        rf"{re.escape(group)}\s+\d+\s+[\d.]+%\s+[\d.]+%\s+[\d.]+%\s+[\d.]+\s+[\d.]+\s+([+-][\d.]+%|n/a)\s+([+-][\d.]+%|n/a)"
        for group in [
            "gunicorn",
            "daphne",
            "edge",
            "celery worker",
            "event consumers",
            "stream",
            "replay",
            "postgres backends",
            "redis",
            "client: REST (this process)",
            "client: WebSocket fleets",
            "servers (RSS: app servers)",
        ]  # fmt: skip
    ),
    r"machine: CPU busy [\d.]+ % of \d+ cores = servers [\d.]+ % \+ load clients [\d.]+ % "
    r"\+ other work [\d.]+ %; memory used peak [\d.]+ %",
    *(rf"{re.escape(target)}\s+.*\s(met|MISSED)$" for target, _, _ in loadtest.judge(GOOD)),
]


def _missing(text: str, patterns: list[str] = FIGURES) -> list[str]:
    return [p for p in patterns if not re.search(p, text, re.M)]


def test_all_targets_met_when_every_figure_is_within_them():
    assert all(met for _, _, met in loadtest.judge(GOOD))


@pytest.mark.parametrize(("change", "target"), MISSES, ids=[t for _, t in MISSES])
def test_a_figure_at_its_limit_misses_exactly_that_target(change, target):
    verdicts = loadtest.judge({**GOOD, **change})
    missed = [name for name, _, met in verdicts if not met]
    assert len(missed) == 1 and target in missed[0]


def _fake_run(ws_p99: float):
    """Figures as a run leaves them: one result per operation, two samples, both fleets' answers."""
    ops = []
    for name, weight in [*loadtest.MIX, (loadtest.LOGIN, 0.0)]:
        result = LoadResult(rate=10, clients=2, seconds=10, scheduled=100, elapsed=10.0)
        result.latencies = [0.005 + i / 10_000 for i in range(100)]
        result.statuses = Counter({200: 100})
        ops.append(loadtest.Op(name, weight, b"", 10.0, 2, result))
    servers = ["gunicorn", "daphne", "edge", "celery worker", "event consumers", "stream", "replay"]
    servers += ["postgres backends", "redis"]
    clients = ["client: REST (this process)", "client: WebSocket fleets"]
    sampler = loadtest.Sampler({}, 5.0)
    for at, rss in ((0.0, 100 * 2**20), (5.0, 104 * 2**20), (10.0, 105 * 2**20)):
        groups = servers + clients
        sample = loadtest.Sample(
            at,
            dict.fromkeys(groups, 0.5 if at else 0.0),
            dict.fromkeys(groups, rss),
            dict.fromkeys(groups, 1),
            0.5,
            30.0,
        )
        # gunicorn's master and two workers, each: 0.1 s of CPU a second for a worker, RSS as the group's
        sample.per["gunicorn"] = {1: (0.0, rss), 2: (at / 10, rss), 3: (at / 10, rss)}
        sampler.samples.append(sample)

    ws = {"p50": 20.0, "p99": ws_p99, "max": ws_p99, "lost": 0, "duplicates": 0, "ready": 10, "closed": 0}
    edge = {**ws, "expected": 100, "unstamped": 40}
    base = {**ws, "p99": 50.0, "expected": 100, "unstamped": 0}
    cfg = loadtest.Config(duration=10, rps=50, ws_clients=10, replay_speed=2, sample_s=5)
    return cfg, ops, sampler, servers, clients, edge, base, 10.0, "", (20, [1.0, 2.0], (0.5, 0.5, 0.5))


def test_the_report_lists_every_figure_and_fails_on_a_missed_target(capsys):
    # given the figures of a run whose feed p99 is 1.2x its floor -> every target met, exit 0
    assert loadtest.report(*_fake_run(ws_p99=60.0)) == 0
    out = capsys.readouterr().out
    assert _missing(out) == [] and "result: all targets met" in out
    assert re.search(r"servers \(RSS: app servers\).*\+5\.0%", out)  # each group 100 -> 105 MiB
    # the multi-process groups are listed process by process: a worker at 10 % of a core
    assert re.search(r"gunicorn\s+1 .*\n\s+master pid 1\s+1\s+0\.0%.*\n\s+child pid 2\s+1\s+10\.0%\s+10\.0%", out)
    # when the feed's p99 is 2x its floor -> exit 1, naming that target
    assert loadtest.report(*_fake_run(ws_p99=100.0)) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "result: MISSED WebSocket p99 <= 1.5x the raw-broadcast floor"


@pytest.mark.slow
@pytest.mark.django_db
def test_the_harness_runs_every_server_under_load_and_reports_every_figure(settings):
    """Given this session's database and Redis, when the harness runs for 6 s (one log-in) with 10 req/s and 10
    WebSocket clients, then it prints every figure and its verdict matches its exit status."""
    from tests.conftest import service_env

    env = {**os.environ, **service_env(), "DATA_DIR": str(settings.DATA_DIR), "BENCH_PORTS": "18500-18599"}
    argv = [sys.executable, "-m", "benchmarks.loadtest", "--duration", "6", "--rps", "10", "--ws-clients", "10"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert _missing(out, HEADER + FIGURES) == [], out
    assert len(re.findall(r"^\s+master pid \d+\s+1\s+[\d.]+%", out, re.M)) == 2, out  # gunicorn's, Celery's
    assert ("result: all targets met" in out) == (proc.returncode == 0)
    # the feed carried the probes and the stream's decisions to every client
    assert re.search(r"edge ws/decisions/\?symbols=LIVE .* lost 0 .* connected 10/10", out), out
    decided = int(re.search(r"live stream: (\d+) bars", out).group(1))
    assert decided > 0, out
    assert re.search(r"REST error rate .* 0\.000 % \(0 of \d+\)", out), out
