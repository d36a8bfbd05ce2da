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
