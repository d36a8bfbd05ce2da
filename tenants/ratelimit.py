"""API rate limits: one atomic Redis script checks every bucket a request counts against (its
tenant, its API key, its user) and takes a token from each only when all allow it, so processes
share the limits and a refused request consumes nothing.

The algorithm is GCRA (the token bucket written as one timestamp per bucket): a bucket of
``limit`` per minute lets ``limit`` requests through in a burst, then one every 60/limit s. The
script reads the server's clock (one clock for every process), and keeps integers in microseconds
(Lua's numbers print with 14 digits: a float timestamp would lose precision as text).

Headers (IETF RateLimit draft style, deltas in seconds), on every API response: the most
constraining bucket's ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset``
(seconds until it is full again); on a 429 also ``Retry-After``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import limits

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = 60000000
local n = #KEYS
local tats = {}
local deny, deny_i = 0, 0
for i = 1, n do
  local interval = period / tonumber(ARGV[i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now and allow_at - now > deny then deny, deny_i = allow_at - now, i end
  tats[i] = new_tat
end
if deny_i > 0 then
  local tat = tonumber(redis.call('GET', KEYS[deny_i]) or '0')
  return {0, deny_i, math.ceil(deny / 1000), 0, math.ceil((tat - now) / 1000)}
end
local best, best_i, best_reset = nil, 1, 0
for i = 1, n do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', 61000)
  local interval = period / tonumber(ARGV[i])
  local remaining = math.floor((period - (tats[i] - now)) / interval)
  if best == nil or remaining < best then best, best_i, best_reset = remaining, i, tats[i] - now end
end
return {1, best_i, 0, best, math.ceil(best_reset / 1000)}
"""
_script = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    scope: str  # tenant | key | user: the bucket reported
    limit: int
    remaining: int
    reset_s: int  # until that bucket is full again
    retry_after_s: int = 0

    def headers(self) -> dict[str, str]:
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_s)
        return out


def buckets(tenant, *, key_id: int | None = None, user_id: int | None = None) -> list[tuple[str, str, int]]:
    """(scope, Redis key, limit per minute) of every capped bucket a request counts against."""
    schema = tenant.schema_name
    out = []
    for scope, metric, who in (
        ("tenant", "api_requests_per_minute", "t"),
        ("key", "api_requests_per_minute_per_key", f"k{key_id}" if key_id else None),
        ("user", "api_requests_per_minute_per_user", f"u{user_id}" if user_id else None),
    ):
        if scope != "tenant" and who is None:
            continue
        cap = limits.plan_limit(tenant, metric)
        if cap is not None and cap > 0:
            out.append((scope, f"rl:{schema}:{who}", cap))
    return out


def rate_check(tenant, *, key_id: int | None = None, user_id: int | None = None) -> Decision | None:
    """Take one request from each bucket, or none when any is empty; None when nothing is capped."""
    global _script
    found = buckets(tenant, key_id=key_id, user_id=user_id)
    if not found:
        return None
    if _script is None:
        _script = limits._redis().register_script(_GCRA)
    ok, i, retry_ms, remaining, reset_ms = _script(keys=[b[1] for b in found], args=[b[2] for b in found])
    scope, _, cap = found[int(i) - 1]
    return Decision(
        allowed=bool(ok), scope=scope, limit=cap, remaining=max(0, int(remaining)),
        reset_s=max(0, -(-int(reset_ms) // 1000)), retry_after_s=max(1, -(-int(retry_ms) // 1000)) if not ok else 0,
    )  # fmt: skip
