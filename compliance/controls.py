"""Kill switches (MiFID II RTS 6 Art. 12): a tenant's, or the whole platform's, halts new decisions
— REST and the live stream — in every process within 100 ms. Enforced in the decision paths,
which call :func:`kill_check`; this module never imports them.

The engaged switches live in the database (``tenants.KillSwitch``, the record) and are mirrored in
Redis; each process reads the mirror at most every ``REFRESH_S`` per tenant (one ``MGET``), so the
hot path usually costs a dictionary lookup. If Redis lost the mirror (restart), it is rebuilt from
the database on the next read; if Redis is unreachable, the database is read instead.

Tenant admins (and staff) engage their tenant's switch; only platform staff lift a switch, or
engage the platform's."""

from __future__ import annotations

import json
import logging
import time

import redis
from django.db import transaction
from django.utils import timezone

from api.errors import ApplicationError

log = logging.getLogger(__name__)
REFRESH_S = 0.05
PLATFORM = "kill:platform"
LOADED = "kill:loaded"
_cache: dict[str, tuple[float, dict | None]] = {}


def _key(schema: str) -> str:
    return f"kill:{schema}"


def _redis():
    from tenants.resolution import redis_client

    return redis_client()


def _info(switch) -> dict:
    return {
        "scope": "tenant" if switch.tenant_id else "platform",
        "reason": switch.reason,
        "engaged_by": switch.engaged_by,
        "since": switch.engaged_at.isoformat(),
    }


def _mirror_rebuild() -> None:
    """Redis mirror from the database: every engaged switch, and the marker saying it is complete."""
    from tenants.models import KillSwitch

    r = _redis()
    pipe = r.pipeline()
    for key in r.scan_iter("kill:*"):
        pipe.delete(key)
    for switch in KillSwitch.objects.filter(lifted_at=None).select_related("tenant"):
        pipe.set(_key(switch.tenant.schema_name) if switch.tenant_id else PLATFORM, json.dumps(_info(switch)))
    pipe.set(LOADED, "1")
    pipe.execute()


def _from_database(schema: str) -> dict | None:
    from django.db.models import Q

    from tenants.models import KillSwitch

    switch = (
        KillSwitch.objects.filter(lifted_at=None)
        .filter(Q(tenant=None) | Q(tenant__schema_name=schema))
        .order_by("tenant_id")  # the platform's (null) first
        .first()
    )
    return _info(switch) if switch else None


def kill_state(schema: str) -> dict | None:
    """The engaged switch that stops ``schema`` (the platform's first, then its own), or None."""
    now = time.monotonic()
    hit = _cache.get(schema)
    if hit is not None and now - hit[0] < REFRESH_S:
        return hit[1]
    try:
        loaded, platform, own = _redis().mget(LOADED, PLATFORM, _key(schema))
        if loaded is None:
            _mirror_rebuild()
            loaded, platform, own = _redis().mget(LOADED, PLATFORM, _key(schema))
        raw = platform or own
        state = json.loads(raw) if raw else None
    except redis.RedisError as exc:
        log.warning("kill switch mirror unreachable (%s): reading the database", exc)
        state = _from_database(schema)
    _cache[schema] = (now, state)
    return state


def kill_check(schema: str) -> None:
    """Raise ``kill_switch_active`` (423) when trading is halted for ``schema``."""
    state = kill_state(schema)
    if state is not None:
        who = "the platform" if state["scope"] == "platform" else "this tenant"
        raise ApplicationError(
            "kill_switch_active",
            f"Trading is halted for {who} (kill switch engaged {state['since'][:19]}Z: {state['reason']}). No "
            "decision is made until platform staff lift it.",
            state, status=423,
        )  # fmt: skip


def kill_engage(*, tenant=None, reason: str, actor) -> object:
    """Engage a tenant's switch (``tenant``) or the platform's (None: staff only); idempotent."""
    from compliance.services import actor_display, audit_record
    from tenants.models import KillSwitch

    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("reason_required", "Say why trading is halted (reason).")
    if tenant is None and not getattr(actor, "is_staff", False):
        raise ApplicationError("staff_only", "Only platform staff engage the platform-wide kill switch.", status=403)
    existing = KillSwitch.objects.filter(tenant=tenant, lifted_at=None).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        switch = KillSwitch.objects.create(tenant=tenant, reason=reason[:300], engaged_by=actor_display(actor))
        if tenant is not None:
            from django_tenants.utils import schema_context

            with schema_context(tenant.schema_name):
                audit_record(actor, "kill_switch.engaged", switch, {"reason": reason})
        _notify("kill_switch.engaged", switch, {"reason": reason[:300], "scope": "tenant" if tenant else "platform",
                                                "by": switch.engaged_by})  # fmt: skip
        transaction.on_commit(lambda: _publish(switch))
    log.warning("kill switch engaged for %s by %s: %s", tenant or "the platform", switch.engaged_by, reason)
    return switch


def kill_lift(*, tenant=None, actor) -> bool:
    """Lift a switch: platform staff only (a tenant cannot lift its own). Whether one was engaged."""
    from compliance.services import actor_display, audit_record
    from tenants.models import KillSwitch

    if not getattr(actor, "is_staff", False):
        raise ApplicationError(
            "staff_only", "Only platform staff can lift a kill switch; contact support with the reason it was engaged.",
            status=403,
        )  # fmt: skip
    with transaction.atomic():
        switch = KillSwitch.objects.select_for_update().filter(tenant=tenant, lifted_at=None).first()
        if switch is None:
            return False
        switch.lifted_by, switch.lifted_at = actor_display(actor), timezone.now()
        switch.save(update_fields=["lifted_by", "lifted_at"])
        if tenant is not None:
            from django_tenants.utils import schema_context

            with schema_context(tenant.schema_name):
                audit_record(actor, "kill_switch.lifted", switch, {"engaged_since": switch.engaged_at.isoformat()})
        _notify("kill_switch.lifted", switch, {"reason": switch.reason, "scope": "tenant" if tenant else "platform",
                                               "by": switch.lifted_by})  # fmt: skip
        transaction.on_commit(lambda: _publish(switch))
    return True


def _notify(kind: str, switch, data: dict) -> None:
    """The tenant's subscribers told (every active tenant's, for the platform switch)."""
    from django_tenants.utils import schema_context

    from notifications.services import emit
    from tenants.models import Tenant

    if switch.tenant_id:
        schemas = [switch.tenant.schema_name]
    else:
        schemas = list(Tenant.objects.filter(status=Tenant.Status.ACTIVE).values_list("schema_name", flat=True))
    for schema in schemas:
        with schema_context(schema):
            emit(kind, data, dedupe_key=f"{kind}:{switch.pk}")


def _publish(switch) -> None:
    """The switch into the Redis mirror (every process sees it within ``REFRESH_S``)."""
    key = _key(switch.tenant.schema_name) if switch.tenant_id else PLATFORM
    try:
        r = _redis()
        if switch.lifted_at is None:
            r.set(key, json.dumps(_info(switch)))
        else:
            r.delete(key)
        if not r.exists(LOADED):
            _mirror_rebuild()
    except redis.RedisError as exc:
        log.warning("kill switch mirror not updated (%s): processes read the database meanwhile", exc)
    _cache.clear()  # this process at once


def reset_local() -> None:
    _cache.clear()


# --- pre-trade controls (MiFID II RTS 6 Art. 15) --------------------------------------------------
# Configured per environment in the configuration service (``controls.*``), enforced in the
# decision paths, which pass plain numbers here (this module never imports them).


def pretrade_check(limits: dict, *, current_qty: float, target_qty: float, price: float, last_price: float):
    """The first pre-trade control an order from ``current_qty`` to ``target_qty`` at ``price``
    breaches, as ``(code, reason)``, or None. Reducing a position is never refused by the position
    limit; the price collar and the order value apply to every order."""
    order = target_qty - current_qty
    if order == 0:
        return None
    collar = limits.get("price_collar_pct")
    if collar and last_price > 0:
        moved = abs(price / last_price - 1.0) * 100.0
        if moved > collar:
            return "price_collar", (
                f"price {price:.6g} is {moved:.2f}% from the last price {last_price:.6g} (collar {collar:g}%)"
            )
    max_value = limits.get("max_order_value")
    if max_value and abs(order) * price > max_value:
        return "max_order_value", f"order value {abs(order) * price:,.2f} is above the limit {max_value:,.2f}"
    max_position = limits.get("max_position")
    if max_position and abs(target_qty) > max_position and abs(target_qty) > abs(current_qty):
        return "max_position", f"position {abs(target_qty):.6g} would be above the limit {max_position:g}"
    return None


def decisions_admit(schema: str, wanted: int, per_second: int | None) -> int:
    """How many of ``wanted`` BUY/SELL decisions the tenant may make in this second (all of them
    without a limit). One counter per tenant and second in Redis, shared by every process; if
    Redis is unreachable the limit is not enforced (logged), since the other controls still are."""
    if not per_second or wanted <= 0:
        return wanted
    key = f"ctl:dps:{schema}:{int(time.time())}"
    try:
        pipe = _redis().pipeline()
        pipe.incrby(key, wanted)
        pipe.expire(key, 2)
        total = pipe.execute()[0]
    except redis.RedisError as exc:
        log.warning("decisions-per-second counter unreachable (%s): not enforced meanwhile", exc)
        return wanted
    return max(0, min(wanted, per_second - (total - wanted)))


def ledger_check(limits: dict, *, pnl_today: float, drawdown_pct: float):
    """The halting control the paper ledger breaches (daily loss, drawdown), as (code, reason)."""
    loss = limits.get("daily_loss_limit")
    if loss and -pnl_today >= loss:
        return "daily_loss_limit", f"the paper ledger lost {-pnl_today:,.2f} today (limit {loss:,.2f})"
    max_dd = limits.get("max_drawdown_pct")
    if max_dd and drawdown_pct >= max_dd:
        return "max_drawdown", f"the paper equity is {drawdown_pct:.2f}% below its peak (limit {max_dd:g}%)"
    return None


def halt_for_breach(*, tenant, code: str, reason: str) -> object:
    """A halting control breached: engage the tenant's kill switch (only staff lift it)."""
    return kill_engage(tenant=tenant, reason=f"control {code}: {reason}", actor="system:controls")
