"""Run the registered event consumers for every active tenant (``manage.py run_event_consumers``).

A consumer is a function registered with :func:`consumes` for one event and consumer group; it
gets a batch of :class:`bus.Entry` inside the tenant's schema and may return the ids it could not
handle. Delivery is the bus's: at-least-once through the group (acknowledged after the function
returned, so it must be idempotent), a dead consumer's pending entries reclaimed after
``claim_idle_ms``, repeated failures dead-lettered. The market data stream has its own process
(``run_decision_stream``); this runs everything else.

Consumers live in the modules of :data:`CONSUMER_MODULES`, imported by :func:`load`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from django_tenants.utils import schema_context

from . import bus

log = logging.getLogger(__name__)

CONSUMER_MODULES = ("intelligence.event_consumers",)


@dataclass(frozen=True)
class Registered:
    event: str
    group: str
    fn: Callable[[list[bus.Entry]], Iterable[str] | None]


REGISTRY: dict[tuple[str, str], Registered] = {}


def consumes(event: str, group: str):
    """Register ``fn(entries)`` as the consumer group ``group`` of ``event``."""
    bus.event_type(event)  # an unknown event fails at import, not at the first entry

    def register(fn):
        REGISTRY[(event, group)] = Registered(event, group, fn)
        return fn

    return register


def load() -> list[Registered]:
    import importlib

    for module in CONSUMER_MODULES:
        importlib.import_module(module)
    return list(REGISTRY.values())


def _in_schema(schema: str, fn):
    def handle(entries):
        with schema_context(schema):
            return fn(entries)

    return handle


class Runner:
    """Every registered consumer on every given tenant schema, polled in turn (one process)."""

    def __init__(
        self,
        schemas: Iterable[str],
        consumers: Iterable[Registered] | None = None,
        *,
        name: str | None = None,
        batch: int = 200,
        claim_idle_ms: int = 30_000,
    ):
        registered = list(consumers) if consumers is not None else load()
        extra = {"name": name} if name else {}
        self.consumers = [
            bus.Consumer(
                r.event, r.group, _in_schema(schema, r.fn), schema=schema, batch=batch, claim_idle_ms=claim_idle_ms,
                **extra,
            )
            for schema in schemas
            for r in registered
        ]  # fmt: skip
        for consumer in self.consumers:
            consumer.ensure_group()

    def run_once(self) -> int:
        """One batch from each consumer (waiting 1 ms at most: 0 would block for ever); how many
        entries were handled."""
        return sum(consumer.run_once(block_ms=1) for consumer in self.consumers)

    def drain(self, max_rounds: int = 1000) -> int:
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            total += n
            if not n:
                break
        return total

    def run(self, stop: Callable[[], bool] = lambda: False, idle_s: float = 0.2) -> None:
        while not stop():
            try:
                if not self.run_once():
                    time.sleep(idle_s)
            except redis.ConnectionError:
                log.warning("event consumers: Redis unreachable, retrying in 1 s")
                time.sleep(1)
