"""Per-channel send rates, shared by every worker through Redis (GCRA: one "theoretical arrival
time" per key). Telegram allows a bot about 30 messages a second overall and one a second per
chat; webhooks are paced per endpoint and e-mail per tenant. A delivery that would exceed a rate
is not an error: it waits and does not count as an attempt. A short wait is booked and slept in
the worker's thread (so a queue of messages to one chat goes out one a second, in order, instead of
every waiting task retrying at once); a longer one re-queues the task for about that long."""

from __future__ import annotations

import time

from django.conf import settings

_GCRA = """
local now = tonumber(ARGV[1])
local book_within = tonumber(ARGV[2])
local wait = 0
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i + 1])
  local burst = tonumber(ARGV[2 * i + 2])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  local w = tat - now - (burst - 1) * interval
  if w > wait then wait = w end
end
if wait > book_within then return {0, tostring(wait)} end
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i + 1])
  local nxt = math.max(tats[i], now + wait) + interval
  redis.call('SET', KEYS[i], tostring(nxt), 'PX', math.ceil((nxt - now) * 1000) + 1000)
end
return {1, tostring(wait)}
"""
_script = None


def _redis_script():
    global _script
    if _script is None:
        from tenants.resolution import redis_client

        _script = redis_client().register_script(_GCRA)
    return _script


def limits_for(channel: str, target: str, schema: str) -> list[tuple[str, float, int]]:
    """(key, messages per second, burst) for each rate a message to ``target`` counts against."""
    if channel == "telegram":
        _, bot, chat = target.split(":", 2)  # the bot's row id: unique within the tenant's schema
        return [
            (f"nrl:tg:{schema}:{bot}", settings.TELEGRAM_RATE_GLOBAL, 1),
            (f"nrl:tg:{schema}:{bot}:{chat}", settings.TELEGRAM_RATE_PER_CHAT, 1),
        ]
    if channel == "webhook":
        return [(f"nrl:wh:{schema}:{target}", settings.NOTIFY_WEBHOOK_RATE, 2)]
    if channel == "email":
        return [(f"nrl:mail:{schema}", settings.NOTIFY_EMAIL_RATE, 2)]
    return []


def acquire(limits: list[tuple[str, float, int]], *, now: float | None = None, book_within: float = 0.0) -> float:
    """0 when a message may go now (and it is counted). Else the seconds to wait: a wait of at most
    ``book_within`` is booked (the slot is the caller's: it sleeps that long, then sends without
    asking again), a longer one is not (the caller asks again after about that long)."""
    return reserve(limits, now=now, book_within=book_within)[1]


def reserve(limits: list[tuple[str, float, int]], *, now: float | None = None, book_within: float = 0.0):
    """(booked, seconds to wait): see :func:`acquire`."""
    if not limits:
        return True, 0.0
    args = [time.time() if now is None else now, book_within]
    for _, rate, burst in limits:
        args += [1.0 / rate, burst]
    booked, wait = _redis_script()(keys=[k for k, _, _ in limits], args=args)
    return bool(booked), float(wait)
