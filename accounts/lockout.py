"""Login lockout, the same for every way in: the dashboard's login form, the API's token endpoint
(``POST /api/v1/auth/token/``) and Django admin's login.

``LOGIN_LOCKOUT_MAX_FAILURES`` failures for one login name within ``LOGIN_LOCKOUT_WINDOW`` lock that
name for ``LOGIN_LOCKOUT_SECONDS``; ``LOGIN_LOCKOUT_MAX_FAILURES_PER_IP`` failures from one client
address (any names: a password spray) lock the address the same way. While locked, an attempt is
refused before the password is even checked, so the right password does not get in either. A
success clears the name's failure count (not the address's: one good login in a spray must not
reset it).

State lives in Redis (``tenants.resolution.redis_client()``), under ``login:fail:*``:
counters expire with their window, locks with their lock time. Names are keyed by a sha256 of
the lowercased address, never the address itself. Failures and lockouts are logged (hashed name,
address, which entry point), never the password.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings

from api.errors import ApplicationError
from tenants.resolution import redis_client

logger = logging.getLogger("accounts.lockout")

PREFIX = "login:fail:"


def _settings() -> tuple[int, int, int, int]:
    return (
        settings.LOGIN_LOCKOUT_MAX_FAILURES,
        settings.LOGIN_LOCKOUT_MAX_FAILURES_PER_IP,
        settings.LOGIN_LOCKOUT_WINDOW,
        settings.LOGIN_LOCKOUT_SECONDS,
    )


def name_digest(username: str) -> str:
    return hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Keys:
    user_count: str
    ip_count: str
    user_lock: str
    ip_lock: str


def _keys(username: str, ip: str) -> _Keys:
    user, addr = name_digest(username), ip or "-"
    return _Keys(f"{PREFIX}user:{user}", f"{PREFIX}ip:{addr}", f"{PREFIX}lock:user:{user}", f"{PREFIX}lock:ip:{addr}")


class LoginLocked(ApplicationError):
    """429 ``login_locked`` with ``Retry-After``; the message says when to try again."""

    def __init__(self, seconds: int):
        minutes = max(1, (seconds + 59) // 60)
        super().__init__(
            "login_locked",
            f"Too many failed log-ins: locked for now. Try again in {minutes} minute{'s' if minutes != 1 else ''}, "
            "or reset your password.",
            {"retry_after_seconds": seconds},
            status=429,
            headers={"Retry-After": str(seconds)},
        )
        self.seconds = seconds


def lockout_check(*, username: str, ip: str) -> None:
    """Raise :class:`LoginLocked` while the name or the address is locked."""
    keys = _keys(username, ip)
    user_ttl, ip_ttl = redis_client().pipeline().ttl(keys.user_lock).ttl(keys.ip_lock).execute()
    wait = max(int(user_ttl), int(ip_ttl))  # -2: no lock
    if wait > 0:
        from ops import metrics

        metrics.limit_rejected("login_lockout", None)
        raise LoginLocked(wait)


# Count one failure for the name and for the address (the window starts at a key's first failure;
# EXPIRE NX would need Redis 7, the embedded one is 6.2), and lock whichever reached its limit.
_FAILURE_LUA = """
local out = {}
for i = 1, 2 do
  local n = redis.call('INCR', KEYS[i])
  if n == 1 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
  local locked = 0
  if n >= tonumber(ARGV[2 + i]) and redis.call('EXISTS', KEYS[2 + i]) == 0 then
    redis.call('SET', KEYS[2 + i], n, 'EX', ARGV[2])
    redis.call('DEL', KEYS[i])
    locked = 1
  end
  out[i] = locked
end
return out
"""


def failure_record(*, username: str, ip: str, via: str) -> None:
    """A wrong password (or unknown name) through ``via`` (``dashboard``, ``api``, ``admin``)."""
    per_user, per_ip, window, lock_for = _settings()
    keys = _keys(username, ip)
    user_locked, ip_locked = redis_client().eval(
        _FAILURE_LUA, 4, keys.user_count, keys.ip_count, keys.user_lock, keys.ip_lock, window, lock_for, per_user,
        per_ip,
    )  # fmt: skip
    who = name_digest(username)
    logger.warning("login failed via=%s user=%s ip=%s", via, who, ip or "-")
    if user_locked:
        logger.warning("login locked via=%s user=%s ip=%s seconds=%s reason=user", via, who, ip or "-", lock_for)
    if ip_locked:
        logger.warning("login locked via=%s ip=%s seconds=%s reason=ip", via, ip or "-", lock_for)


def success_record(*, username: str) -> None:
    """Clear the name's failure count."""
    redis_client().delete(_keys(username, "").user_count)


def unlock(*, username: str = "", ip: str = "") -> None:
    """Lift a lock early (support: the person proved who they are some other way)."""
    keys = _keys(username, ip)
    doomed = ([keys.user_lock, keys.user_count] if username else []) + ([keys.ip_lock, keys.ip_count] if ip else [])
    if doomed:
        redis_client().delete(*doomed)
