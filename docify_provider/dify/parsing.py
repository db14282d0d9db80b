"""The lenient readers every Dify model is built with (the Service API's and the account API's).

Separate from the models so that the model modules (``models``, ``apps``, ``files``) can share them
without importing one another: Dify adds and renames fields across versions, so a number may come
as a string, a list may be missing and a time may be epoch seconds or ISO 8601. Only a payload that
is not a JSON object where one is required raises (``DifyProtocolError``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import pendulum

from docify_provider.dify.errors import DifyProtocolError

__all__ = ["as_list", "epoch_to_datetime", "json_object", "opt_float", "opt_int", "opt_str"]

_N = TypeVar("_N", int, float)


def epoch_to_datetime(value: Any) -> datetime | None:
    """Epoch seconds (or an ISO 8601 string) -> aware UTC datetime (a ``pendulum.DateTime``)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        if isinstance(value, str) and not value.replace(".", "", 1).isdigit():
            utc = datetime.fromisoformat(value.replace("Z", "+00:00"))
            utc = (utc if utc.tzinfo else utc.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
        else:
            utc = datetime.fromtimestamp(float(value), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return pendulum.DateTime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=pendulum.UTC
    )


def json_object(payload: Any, what: str) -> dict[str, Any]:
    """``payload`` when it is a JSON object; else ``DifyProtocolError`` naming ``what`` was expected."""
    if not isinstance(payload, dict):
        raise DifyProtocolError(f"Expected a JSON object for {what}, got {type(payload).__name__}")
    return payload


def _number(value: Any, kind: Callable[[Any], _N]) -> _N | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def opt_int(value: Any) -> int | None:
    """An int, or None for a missing, boolean or unreadable value."""
    return _number(value, int)


def opt_float(value: Any) -> float | None:
    """A float, or None for a missing, boolean or unreadable value."""
    return _number(value, float)


def opt_str(value: Any) -> str | None:
    """``str(value)``, or None for None."""
    return None if value is None else str(value)


def as_list(value: Any) -> list[Any]:
    """A list or tuple as a list; anything else as ``[]``."""
    return list(value) if isinstance(value, (list, tuple)) else []
