"""The typed schema of a tenant's configuration: every key, its type, default and bounds.

A configuration document is nested JSON (``{"flow": ..., "controls": {...}, ...}``); its keys are
addressed as dotted paths (``controls.max_position``). A document is validated whole: an unknown
key, a wrong type or a value out of bounds is refused with the path and what is allowed, before
anything is stored. Keys a document leaves out take their defaults; ``None`` means "no limit" for
the nullable limits.

Other apps add meaning without this module importing them: ``register_check(path, fn)`` adds a
check of a key's value against the tenant's own data (e.g. that ``flow`` names a stored flow)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from api.errors import ApplicationError

ENVIRONMENTS = ("dev", "staging", "prod")
PROMOTES_FROM = {"staging": "dev", "prod": "staging"}  # the one way a change travels to production
LIVE = "prod"  # the environment the live stream, the feed and REST decisions run


@dataclass(frozen=True)
class Field:
    path: str
    type: type  # bool, int, float or str
    default: object
    help: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    max_length: int = 120

    def check(self, value, at: str):
        if value is None:
            if self.nullable:
                return None
            _bad(at, f"{self.path} cannot be null", self)
        if self.type is bool:
            if not isinstance(value, bool):
                _bad(at, f"{self.path} must be true or false", self)
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                _bad(at, f"{self.path} must be a number", self)
            if self.type is int and int(value) != value:
                _bad(at, f"{self.path} must be a whole number", self)
            value = self.type(value)
            if self.min is not None and (value <= self.min if self.exclusive_min else value < self.min):
                _bad(at, f"{self.path} must be {'above' if self.exclusive_min else 'at least'} {self.min:g}", self)
            if self.max is not None and value > self.max:
                _bad(at, f"{self.path} must be at most {self.max:g}", self)
            return value
        if not isinstance(value, str) or len(value) > self.max_length:
            _bad(at, f"{self.path} must be text of at most {self.max_length} characters", self)
        return value.strip()

    def describe(self) -> dict:
        kind = {bool: "boolean", int: "integer", float: "number", str: "string"}[self.type]
        out = {"path": self.path, "type": kind, "nullable": self.nullable, "default": self.default, "help": self.help}
        if self.min is not None:
            out["exclusive_minimum" if self.exclusive_min else "minimum"] = self.min
        if self.max is not None:
            out["maximum"] = self.max
        return out


FIELDS: tuple[Field, ...] = (
    Field("flow", str, None, "The decision flow this environment runs, as name@version (null: the built-in "
          "default flow).", nullable=True),
    Field("decisions.min_confidence", float, 0.0, "A BUY or SELL below this confidence is turned into HOLD.",
          min=0.0, max=1.0),
    Field("feed.publish", bool, True, "Publish decisions on the live WebSocket feed (they are stored either way)."),
    Field("controls.max_position", float, None, "Pre-trade: the largest paper position, in units of the "
          "instrument, a decision may build (reducing a position is always allowed).", nullable=True, min=0.0,
          exclusive_min=True),
    Field("controls.max_order_value", float, None, "Pre-trade: the largest notional (units x price) one "
          "decision may trade.", nullable=True, min=0.0, exclusive_min=True),
    Field("controls.price_collar_pct", float, None, "Pre-trade: refuse to trade when the price moved more than "
          "this percentage from the last traded price (a fat-finger or bad-tick guard).", nullable=True, min=0.0,
          max=100.0, exclusive_min=True),
    Field("controls.max_decisions_per_second", int, None, "Pre-trade: at most this many BUY/SELL decisions per "
          "second across the tenant; more are held.", nullable=True, min=1, max=100_000),
    Field("controls.daily_loss_limit", float, None, "Halt: when the paper ledger has lost this much today (UTC, "
          "realised and unrealised), the tenant's kill switch engages.", nullable=True, min=0.0, exclusive_min=True),
    Field("controls.max_drawdown_pct", float, None, "Halt: when the paper equity is this percentage below its "
          "peak, the tenant's kill switch engages.", nullable=True, min=0.0, max=100.0, exclusive_min=True),
    Field("workflows.require_approval", bool, False, "Deploy workflows wait for an admin's approval "
          "(POST /api/v1/workflows/{id}/approve/) before they promote a version to production."),
)  # fmt: skip
BY_PATH = {f.path: f for f in FIELDS}
_checks: dict[str, Callable[[object, object], None]] = {}


def register_check(path: str, fn: Callable[[object, object], None]) -> None:
    """``fn(value, tenant)`` raises ``ApplicationError`` when ``value`` is not acceptable for ``path``."""
    _checks[path] = fn


def _bad(path: str, message: str, field: Field | None = None) -> None:
    details = {"path": path}
    if field is not None:
        details["expected"] = field.describe()
    raise ApplicationError("invalid_config", f"{message}.", details)


def flatten(doc: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def nest(flat: dict) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def defaults() -> dict:
    return nest({f.path: f.default for f in FIELDS})


def validate(doc, *, tenant=None, base: dict | None = None) -> dict:
    """The complete, typed document from ``doc`` (nested JSON), over ``base`` (a PATCH) or the
    defaults (a PUT). Raises ``invalid_config`` naming the first bad path."""
    if not isinstance(doc, dict):
        _bad("", "The configuration must be a JSON object")
    flat = flatten(doc)
    for path in flat:
        if path not in BY_PATH:
            group = path.split(".")[0]
            if any(f.path.startswith(group + ".") for f in FIELDS) and "." not in path:
                _bad(path, f"{path} is a group; give its keys ({', '.join(_group_keys(group))})")
            _bad(path, f"Unknown setting {path}; GET /api/v1/config/schema/ lists the settings")
    for path in BY_PATH:  # a group given as a value (e.g. "controls": 5)
        group = path.split(".")[0]
        if group != path and group in doc and not isinstance(doc[group], dict):
            _bad(group, f"{group} must be an object of settings ({', '.join(_group_keys(group))})")
    merged = flatten(base) if base is not None else {f.path: f.default for f in FIELDS}
    for path, value in flat.items():
        merged[path] = BY_PATH[path].check(value, path)
    for path, fn in _checks.items():
        if tenant is not None and path in flat and merged[path] is not None:
            fn(merged[path], tenant)
    return nest({f.path: merged.get(f.path, f.default) for f in FIELDS})


def _group_keys(group: str) -> list[str]:
    return [f.path.split(".", 1)[1] for f in FIELDS if f.path.startswith(group + ".")]


def diff(old: dict, new: dict) -> list[dict]:
    """What changed between two documents, key by key: ``[{"path", "from", "to"}]`` in schema order."""
    a, b = flatten(old or {}), flatten(new or {})
    out = []
    for f in FIELDS:
        before, after = a.get(f.path, f.default), b.get(f.path, f.default)
        if before != after:
            out.append({"path": f.path, "from": before, "to": after})
    return out


def schema_document() -> dict:
    return {
        "environments": list(ENVIRONMENTS),
        "promotion": [f"{src} -> {dst}" for dst, src in PROMOTES_FROM.items()],
        "live": LIVE,
        "settings": [f.describe() for f in FIELDS],
    }
