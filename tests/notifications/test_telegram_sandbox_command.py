"""``manage.py telegram_sandbox`` as the Procfile runs it: a process serving the Bot API with the
bots and chats given, stopped cleanly by SIGTERM (honcho); with a real Telegram configured and
``--optional``, it serves nothing and waits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from django.conf import settings

from tests.conftest import service_env

from .telegram_helpers import TOKEN


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "telegram_sandbox", *args], cwd=settings.BASE_DIR,
        env={**os.environ, **service_env(), **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def test_the_command_serves_the_bots_and_chats_it_is_given(tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start("--port", str(port), "--bot", f"{TOKEN}:cmd_bot", "--chat", "4242:Ann: the analyst",
                  TELEGRAM_API_BASE=base)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/bot{TOKEN}/getMe", timeout=2) as r:  # noqa: S310 - local
                    me = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.2)
        assert me["ok"] and me["result"]["username"] == "cmd_bot"
        with urllib.request.urlopen(f"{base}/_sandbox/state", timeout=2) as r:  # noqa: S310 - local
            state = json.loads(r.read())
        assert state["chats"] == [{"id": 4242, "type": "private", "first_name": "Ann: the analyst"}]
    finally:
        out = _stop(proc)
    assert f"Telegram sandbox at {base}/ (bots: @cmd_bot; chats: 1)" in out


def test_with_a_real_telegram_configured_it_only_waits():
    proc = _start("--port", str(_free_port()), "--optional", TELEGRAM_API_BASE="https://api.telegram.org")
    deadline = time.monotonic() + 60
    line = ""
    while "no sandbox needed" not in line:
        assert time.monotonic() < deadline and proc.poll() is None, "no word from the command"
        line = proc.stdout.readline()
    assert _stop(proc) == ""  # nothing more: it served nothing
