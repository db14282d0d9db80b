"""Trigger event payloads and the error <-> event codec, shared by every backend (no Airflow imports).

A trigger runs in the triggerer and its task resumes on a worker: a failure crosses that boundary
as a JSON payload ``{"status": "error", "error_type": "<class name>", "message", "session_id",
"run_id", "detail": {...}}`` (or ``{"status": "outcome_unknown", ...}``) and is rebuilt on the
worker as the same class, found by name among every backend's ``ProviderError`` subclasses.
Whether the run is settled or its outcome unknown is decided by the rebuilt error's own attributes
(``outcome_unknown``, ``run_settled()``), never by ``isinstance`` chains.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from docify_provider._core.errors import OutcomeUnknownError, ProviderError, error_class

#: Event types kept in an error event's ``detail["events_seen"]`` (the last ones).
EVENTS_SEEN_KEPT = 50
#: Longest string shown whole in an event payload's ``repr`` (longer ones are cut, with their length).
_REPR_TEXT = 80
#: The backends' error modules, imported before an error class is looked up by name.
_ERROR_MODULES = ("docify_provider.docify.errors", "docify_provider.dify.errors")

#: ``summary(result, size) -> str | None`` per backend, for a payload's ``result`` in its ``repr``.
_RESULT_SUMMARIES: list[Callable[[Mapping[str, Any], int], str | None]] = []


def register_result_summary(summary: Callable[[Mapping[str, Any], int], str | None]) -> None:
    """Let ``EventPayload``'s repr summarise a backend's run result (``None``: not this backend's)."""
    if summary not in _RESULT_SUMMARIES:
        _RESULT_SUMMARIES.append(summary)


def _brief(key: Any, value: Any) -> str:
    """One short token for ``value`` in an ``EventPayload`` repr."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= _REPR_TEXT else f"{value[: _REPR_TEXT - 1]!r}... ({len(value)} chars)"
    size = len(json.dumps(value, default=str))
    if key == "result" and isinstance(value, Mapping):
        for summary in _RESULT_SUMMARIES:
            text = summary(value, size)
            if text is not None:
                return text
    if size <= _REPR_TEXT:
        return repr(value)
    if isinstance(value, Mapping):
        return f"<dict of {len(value)} keys, {size} chars>"
    if isinstance(value, (list, tuple)):
        return f"<list of {len(value)} items, {size} chars>"
    return f"<{type(value).__name__}, {size} chars>"


class EventPayload(dict[str, Any]):
    """A trigger event payload: a plain ``dict`` to every consumer, with a short one-line ``repr``.

    Airflow 3.0 to 3.3 log every event a trigger fires, in the triggerer and in the task log:
    ``TriggerRunner.run_trigger`` calls ``log.ainfo("Trigger fired event", name=..., result=event)``
    and structlog renders the event with ``repr`` (``TriggerEvent<{payload!r}>``). Only that rendering
    is summarised; nothing is dropped from the payload itself. Pydantic dumps it as a plain dict when
    the runner sends the event to the triggerer's supervisor (msgpack), which stores it in the task
    instance's ``next_kwargs`` for ``execute_complete``; ``dag.test()`` serializes it with serde (a
    ``dict`` subclass is encoded as a dict). So every reader gets back an ordinary ``dict``.
    """

    #: Shown when the repr itself fails.
    label = "Docify"

    def __repr__(self) -> str:
        try:
            return "{" + ", ".join(f"{key!r}: {_brief(key, value)}" for key, value in self.items()) + "}"
        except Exception:  # a repr must never break the log line it is part of
            return f"<{self.label} trigger event with keys {sorted(map(str, self))}>"


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def error_to_event(
    exc: BaseException,
    *,
    session_id: str | None = None,
    posted: bool = True,
    root: type[ProviderError] | None = None,
) -> dict[str, Any]:
    """A ``status: error`` payload describing ``exc`` (JSON only; rebuilt by ``error_from_event``).

    ``root`` is the backend's error root, named for an exception that is not a ``ProviderError``
    (Docify's when not given).
    """
    if isinstance(exc, ProviderError):
        error_type = type(exc).__name__
        detail: dict[str, Any] = {}
        for key, value in vars(exc).items():
            if hasattr(value, "raw") and isinstance(value.raw, dict):
                value = value.raw  # e.g. the RunResult of a failed run
            if key == "events_seen" and isinstance(value, list) and len(value) > EVENTS_SEEN_KEPT:
                # An endless stream sees thousands of events; the trigger event is stored in the
                # metadata DB, so keep only the last few and the count.
                detail["events_seen_count"] = len(value)
                value = value[-EVENTS_SEEN_KEPT:]
            if _json_safe(value):
                detail[key] = value
        message = str(exc)
    else:
        root = root or _default_root()
        # Not ours (a bug, a library error): once the request may have gone out, the outcome is unknown.
        error_type = error_class(root, OutcomeUnknownError).__name__ if posted else root.__name__
        detail = {}
        message = f"{type(exc).__name__}: {exc}"
        if posted:
            message += f" (the run request may have reached {root.label}; it is not re-sent automatically)"
    return {
        "status": "error",
        "error_type": error_type,
        "message": message,
        "session_id": session_id or detail.get("session_id"),
        "run_id": detail.get("run_id"),
        "detail": detail,
    }


def _default_root() -> type[ProviderError]:
    from docify_provider.docify.errors import DocifyError

    return DocifyError


def _subclasses(cls: type[ProviderError]) -> dict[str, type[ProviderError]]:
    found: dict[str, type[ProviderError]] = {}
    stack = [cls]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub.__name__ not in found:
                found[sub.__name__] = sub
                stack.append(sub)
    return found


def provider_error_class(name: str) -> type[ProviderError] | None:
    """The ``ProviderError`` subclass called ``name``, of any backend; None when there is none."""
    for module in _ERROR_MODULES:
        importlib.import_module(module)
    return _subclasses(ProviderError).get(name)


#: Attributes every rebuilt error has (what the hierarchy's constructors set), before the trigger's.
_ERROR_DEFAULTS: dict[str, Any] = {
    "status_code": None,
    "endpoint": None,
    "server_message": None,
    "code": None,
    "retry_after": None,
    "request_sent": True,
    "events_seen": [],
    "error": None,
    "result": None,
    "problems": [],
}


def error_from_event(event: Mapping[str, Any], *, root: type[ProviderError] | None = None) -> Exception:
    """The error an ``error`` / ``outcome_unknown`` trigger event stands for.

    The class is found by name among every backend's ``ProviderError`` subclasses; an unknown name
    gives ``root`` (the backend's error root; Docify's when not given).
    """
    root = root or _default_root()
    status = event.get("status")
    message = str(event.get("message") or f"{root.label} stream trigger reported {status!r}")
    if status == "outcome_unknown":
        unknown = error_class(root, OutcomeUnknownError)
        return unknown(message, session_id=event.get("session_id"), run_id=event.get("run_id"))
    cls = provider_error_class(str(event.get("error_type") or "")) or root
    exc = cls.__new__(cls)
    # Defaults for every attribute the hierarchy defines, then what the trigger saw.
    exc.__dict__.update(
        {
            **_ERROR_DEFAULTS,
            "events_seen": [],
            "problems": [],
            "message": message,
            "session_id": event.get("session_id"),
            "run_id": event.get("run_id"),
        }
    )
    exc.__dict__.update(dict(event.get("detail") or {}))
    for key in ("session_id", "run_id"):
        if exc.__dict__.get(key) is None and event.get(key) is not None:
            exc.__dict__[key] = event[key]
    Exception.__init__(exc, message)
    return exc


__all__ = [
    "EVENTS_SEEN_KEPT",
    "EventPayload",
    "error_from_event",
    "error_to_event",
    "provider_error_class",
    "register_result_summary",
]
