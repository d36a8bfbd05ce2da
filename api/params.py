"""Query parameters read by hand (outside a serializer), as strictly as a serializer would."""

from api.errors import ApplicationError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def query_flag(request, name: str, default: bool = False) -> bool:
    """A boolean query parameter: absent or empty gives ``default``; true/false, 1/0, yes/no, on/off (any
    case) are read; anything else is 400 ``invalid_input`` naming it."""
    raw = request.query_params.get(name)
    value = (raw or "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ApplicationError("invalid_input", f"{name} is true or false.", {name: [f"not a boolean: {raw[:20]!r}"]})
