"""Hot reload: a configuration change reaches the running processes without a restart.

After the change commits, :func:`publish` sends ``{"type": "config.changed", "environment",
"version", "changed"}`` to the tenant's channel-layer group ``config.<schema>`` (every process
listening gets it at once) and records the version under ``config:<schema>:<environment>`` in
Redis. Listeners:

- a live stream process holds a :class:`ConfigWatcher` (a thread that joined the group) and
  reloads its pipeline at the next batch boundary, so no batch runs half on the old and half on
  the new configuration;
- the WebSocket edge listens with :func:`listen` and tells the tenant's sockets.

The channel layer (Redis pub/sub) delivers at most once and only to processes listening at that
moment, so the watcher also reads the version key every ``POLL_S``: a message lost while a
process reconnected costs at most that long."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from asgiref.sync import async_to_sync

from .schema import LIVE

log = logging.getLogger(__name__)
POLL_S = 2.0


def group_name(schema: str) -> str:
    return f"config.{schema}"


def version_key(schema: str, environment: str) -> str:
    return f"config:{schema}:{environment}"


def _redis():
    from tenants.resolution import redis_client

    return redis_client()


def publish(schema: str, environment: str, version: int, changed: list[str]) -> None:
    message = {"type": "config.changed", "environment": environment, "version": version, "changed": changed}
    try:
        _redis().set(version_key(schema, environment), version)
    except Exception as exc:  # noqa: BLE001 - the watchers' poll reads the database's version meanwhile
        log.warning("config version key not updated (%s)", exc)
    try:
        from channels.layers import get_channel_layer

        async_to_sync(get_channel_layer().group_send)(group_name(schema), message)
    except Exception as exc:  # noqa: BLE001 - the change is stored; watchers poll the version key
        log.warning("config change %s@%s not pushed (%s): processes pick it up within %ss", environment, version,
                    exc, POLL_S)  # fmt: skip


async def listen(schema: str, on_message, *, ready: asyncio.Event | None = None) -> None:
    """Call ``on_message(message)`` for each change of ``schema``'s configuration until cancelled."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = await layer.new_channel("config.")
    await layer.group_add(group_name(schema), channel)
    if ready is not None:
        ready.set()
    try:
        while True:
            message = await layer.receive(channel)
            if message.get("type") == "config.changed":
                try:
                    on_message(message)
                except Exception:  # noqa: BLE001 - one listener's failure must not stop the others
                    log.exception("config listener failed on %s", message)
    finally:
        try:
            await layer.group_discard(group_name(schema), channel)
        except Exception:  # noqa: BLE001 - the layer may be gone at shutdown
            pass


class ConfigWatcher:
    """The newest configuration version of one tenant's environment, as pushed (channel layer)
    or polled (Redis key, every ``poll_s``). :meth:`latest` is cheap enough for every batch."""

    def __init__(self, schema: str, environment: str = LIVE, *, poll_s: float = POLL_S):
        self.schema, self.environment, self.poll_s = schema, environment, poll_s
        self.version: int | None = None
        self.pushed = 0  # messages received over the channel layer
        self.ready = threading.Event()
        self._polled = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run, name=f"config-watch-{schema}", daemon=True)

    def start(self, timeout: float = 5.0) -> ConfigWatcher:
        self._thread.start()
        if not self.ready.wait(timeout):
            log.warning("config watcher for %s not subscribed after %ss: polling only", self.schema, timeout)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ready = asyncio.Event()

        async def main():
            async def flag():
                await ready.wait()
                self.ready.set()

            helper = asyncio.ensure_future(flag())
            try:
                await listen(self.schema, self._seen_message, ready=ready)
            finally:
                helper.cancel()

        self._task = loop.create_task(main())
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - the poll still works
            log.exception("config watcher for %s stopped: polling only", self.schema)
        finally:
            loop.close()

    def _seen_message(self, message: dict) -> None:
        if message.get("environment") == self.environment:
            self.pushed += 1
            self._seen(int(message["version"]))

    def _seen(self, version: int) -> None:
        if self.version is None or version > self.version:
            self.version = version

    def latest(self) -> int | None:
        now = time.monotonic()
        if now - self._polled >= self.poll_s:
            self._polled = now
            try:
                raw = _redis().get(version_key(self.schema, self.environment))
                if raw is not None:
                    self._seen(int(raw))
            except Exception as exc:  # noqa: BLE001 - pushed messages still arrive
                log.warning("config version key unreadable (%s)", exc)
        return self.version
