"""The live decision feed: decisions are published once per tenant on Redis pub/sub, and each
edge process fans them out to its own sockets (CONVENTIONS §4: a channel-layer message per
client costs ~0.5 ms here; one subscription per process with the payload serialised once does not).

Wire format of a pub/sub message: ``<symbol>\\n<id>\\n<json>`` where ``<json>`` is exactly the text
every subscribed socket receives: ``{"cursor", "id", "type": "decision", "data": {…REST decision…}}``.
The symbol and id up front let a process filter and de-duplicate without parsing the JSON.

Commit-ordered resume (the cursor): decision ids come from a sequence taken *before* commit, so
with two writers for a tenant (two stream partitions, or the stream and ``POST /api/v1/decisions/``)
id 495 can commit, and be published, after id 500; a client resuming with ``?after=500`` would never
get 495. So each publish appends the message to the tenant's Redis Stream (``log_key``, capped at
``FEED_RESUME_RETAIN`` entries and expiring ``FEED_RESUME_TTL_S`` after the last publish) and
PUBLISHes it in the same Lua script, with the stream entry id spliced into the text as
``"cursor"``. Scripts run atomically and publish runs after commit, so entry order = publish order:
everything a client has not received has a later entry id than the last cursor it got, and
``?cursor=<entry id>`` on the edge (:mod:`intelligence.edge`) replays exactly the entries after it.
The text is still serialised once (here) and spliced once (in the script): no per-socket work.

Pub/sub is lossy by design (a process that isn't subscribed misses messages): clients resume with
``?cursor=<last cursor>`` (exact), or ``?after=<id>`` / ``GET /api/v1/decisions/?after=`` (by id:
may miss a decision committed late when several writers run).
"""

from __future__ import annotations

import re

import orjson
import redis
from django.conf import settings
from django.db import connection

_client: redis.Redis | None = None
_script = None

CURSOR_RE = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_CURSOR_AT = len('{"cursor":"')

# KEYS: the tenant's stream. ARGV: its channel (not a key), retain, ttl, then (symbol, id, text) per message.
# The entry id is spliced in as the text's first member; the stream keeps the text without it
# (the edge splices it back on replay: :func:`with_cursor`).
PUBLISH_LUA = """
local chan, retain, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 4, #ARGV, 3 do
  local body = ARGV[i + 2]
  local symbol, ident = ARGV[i], ARGV[i + 1]
  local eid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', retain, '*', 's', symbol, 'i', ident, 'm', body)
  redis.call('PUBLISH', chan, symbol .. '\\n' .. ident .. '\\n{"cursor":"' .. eid .. '",' .. string.sub(body, 2))
end
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        from config.settings.services import REDIS_DB_CHANNELS, redis_db_url

        _client = redis.Redis.from_url(redis_db_url(REDIS_DB_CHANNELS), socket_timeout=5)
    return _client


def channel(schema: str) -> str:
    return f"feed:{schema}:decisions"


def log_key(schema: str) -> str:
    """The tenant's Redis Stream of published messages (the cursor's replay log)."""
    return f"feed:{schema}:log"


def message_text(decision_payload: dict) -> str:
    """The text a socket receives for one decision (the REST shape under ``data``), without its
    cursor (the publish script and :func:`with_cursor` add it)."""
    return orjson.dumps({"id": decision_payload["id"], "type": "decision", "data": decision_payload}).decode()


def with_cursor(text: str, cursor: str) -> str:
    """``text`` from :func:`message_text` with ``"cursor"`` as its first member (as the script does)."""
    return f'{{"cursor":"{cursor}",{text[1:]}'


def cursor_of(text: str) -> tuple[int, int] | None:
    """The cursor of a published text, as a comparable pair, without parsing the JSON (None for
    a text published without one)."""
    if not text.startswith('{"cursor":"'):
        return None
    end = text.index('"', _CURSOR_AT)
    ms, _, seq = text[_CURSOR_AT:end].partition("-")
    return int(ms), int(seq)


def parse_cursor(value: str) -> tuple[int, int] | None:
    """``"1712345678901-3"`` -> ``(1712345678901, 3)``; None when it is not a stream entry id."""
    m = CURSOR_RE.match(value or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def publish_decisions(payloads: list[dict], schema: str | None = None) -> None:
    """Publish decisions (REST-shaped dicts) to the tenant's feed and resume log, in one round
    trip. Call after the transaction that stored them has committed."""
    global _script
    if not payloads:
        return
    schema = schema or connection.schema_name
    client = _redis()
    if _script is None or _script.registered_client is not client:
        _script = client.register_script(PUBLISH_LUA)
    args: list = [channel(schema), settings.FEED_RESUME_RETAIN, settings.FEED_RESUME_TTL_S]
    for p in payloads:
        args += (p["symbol"], p["id"], message_text(p))
    _script(keys=[log_key(schema)], args=args)


def parse(raw: bytes | str) -> tuple[str, int, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    symbol, ident, body = text.split("\n", 2)
    return symbol, int(ident), body
