"""The live decision feed: decisions are published once per tenant on Redis pub/sub, and each
daphne process fans them out to its own sockets (CONVENTIONS §4: a channel-layer message per
client costs ~0.5 ms here; one subscription per process with the payload serialised once does not).

Wire format of a pub/sub message: ``<symbol>\\n<id>\\n<json>`` where ``<json>`` is exactly the text
every subscribed socket receives: ``{"id", "type": "decision", "data": {…REST decision…}}``. The
symbol and id up front let a process filter and de-duplicate without parsing the JSON.

Pub/sub is lossy by design (a process that isn't subscribed misses messages): clients resume with
``?after=<id>`` on connect (or ``GET /api/v1/decisions/?after=``), and ids only increase.
"""

from __future__ import annotations

import orjson
import redis
from django.db import connection

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        from config.settings.services import REDIS_DB_CHANNELS, redis_db_url

        _client = redis.Redis.from_url(redis_db_url(REDIS_DB_CHANNELS), socket_timeout=5)
    return _client


def channel(schema: str) -> str:
    return f"feed:{schema}:decisions"


def message_text(decision_payload: dict) -> str:
    """The text a socket receives for one decision (the REST shape under ``data``)."""
    return orjson.dumps({"id": decision_payload["id"], "type": "decision", "data": decision_payload}).decode()


def publish_decisions(payloads: list[dict], schema: str | None = None) -> None:
    """Publish decisions (REST-shaped dicts) to the tenant's feed, in one round trip. Call after
    the transaction that stored them has committed."""
    if not payloads:
        return
    schema = schema or connection.schema_name
    pipe = _redis().pipeline(transaction=False)
    for p in payloads:
        pipe.publish(channel(schema), f"{p['symbol']}\n{p['id']}\n{message_text(p)}")
    pipe.execute()


def parse(raw: bytes | str) -> tuple[str, int, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    symbol, ident, body = text.split("\n", 2)
    return symbol, int(ident), body
