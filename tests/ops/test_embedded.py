"""Embedded Redis lifecycle in a scratch directory: start on demand, reuse, recover from a stale
pid file after a crash, stop. (PostgreSQL uses the same pattern; the suite itself runs on it.)"""

import os
import signal
import time

import pytest

from config import embedded


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    short = tmp_path  # Unix socket paths must stay < 108 bytes
    monkeypatch.setattr(embedded, "DATA_DIR", short)
    monkeypatch.setattr(embedded, "REDIS_DIR", short / "redis")
    monkeypatch.setattr(embedded, "REDIS_SOCK", short / "redis" / "redis.sock")
    monkeypatch.setattr(embedded, "REDIS_PID", short / "redis" / "redis.pid")
    yield short
    embedded.stop_redis()


def _wait_dead(pid):
    for _ in range(100):
        if not embedded._alive(pid):
            return
        time.sleep(0.05)


def test_start_reuse_crash_recover_stop(scratch):
    url = embedded.redis_url()
    assert url == f"unix://{scratch}/redis/redis.sock" and embedded._redis_ready()
    pid = embedded._read_pid(embedded.REDIS_PID)
    assert embedded.redis_url() == url and embedded._read_pid(embedded.REDIS_PID) == pid  # reused

    os.kill(pid, signal.SIGKILL)  # crash: pid file and socket stay behind
    _wait_dead(pid)
    assert embedded.REDIS_PID.exists() and not embedded._redis_ready()
    embedded.redis_url()  # stale pid handled: a new server starts
    new_pid = embedded._read_pid(embedded.REDIS_PID)
    assert new_pid != pid and embedded._redis_ready()

    assert embedded.stop_redis() is True
    _wait_dead(new_pid)
    assert not embedded._redis_ready() and embedded.stop_redis() is False


def test_status_command_prints_both(capsys):
    assert embedded.main(["embedded", "status"]) == 0
    out = capsys.readouterr().out
    assert "PostgreSQL:" in out and "Redis:" in out
    assert embedded.main(["embedded", "bogus"]) == 2
