"""One-line messages for errors that reach `edgeml`'s `main` from outside the project's own
error tree: pydantic's `ValidationError` (an `EDGEML_*` variable with an unusable value prints
a 45-line report otherwise)."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr, ValidationError

__all__ = ["describe_validation_error"]

_VALUE_ERROR = "Value error, "


def describe_validation_error(exc: ValidationError) -> str:
    """`EDGEML_WEB_PORT='abc': Input should be a valid integer` (every problem, `; `-joined).

    For `Settings`, field names become the environment variables they are read from, and values
    of secret fields are never shown; model-level checks already name their variables."""
    from edgeml.app.settings import Settings

    is_settings = exc.title == Settings.__name__
    prefix = str(Settings.model_config.get("env_prefix", "")) if is_settings else ""
    parts = []
    for error in exc.errors(include_url=False):
        if error["type"] == "default_factory_not_called":
            continue  # a default built from other fields, not built since one of them failed
        message = str(error["msg"]).removeprefix(_VALUE_ERROR)
        loc = [str(part) for part in error["loc"]]
        if not loc:
            parts.append(message)
            continue
        field = loc[0]
        name = f"{prefix}{field.upper()}" if is_settings else ".".join(loc)
        shown = "" if is_settings and _is_secret(Settings, field) else _value(error.get("input"))
        parts.append(f"{name}{shown}: {message}")
    return "; ".join(parts) or str(exc).splitlines()[0]


def _is_secret(model: Any, field: str) -> bool:
    info = model.model_fields.get(field)
    return info is None or "SecretStr" in repr(info.annotation) or info.annotation is SecretStr


def _value(value: Any) -> str:
    if isinstance(value, str | int | float | bool) and len(repr(value)) <= 60:
        return f"={value!r}"
    return ""
