"""Triggers behind the deferrable Docify operator and sensor.

``DocifyStreamTrigger`` holds a streaming run in the triggerer: thousands of streams share one
event loop instead of one worker slot each. Its kwargs carry only the wire inputs (already
validated and uploaded on the worker), the connection id and run options: never the API key,
which the trigger resolves from the connection itself.

A trigger may be restarted (triggerer crash, redeploy) and Docify has no idempotency key, so
before it POSTs the run the trigger writes an XCom marker (``docify_run_request_sent``, state
``"sent"``, with a sentence saying what it guards, as users see it in the XCom tab; the key
``docify_stream_marker`` of earlier builds is still read) for its own task instance
(``XCom.set`` through ``asgiref.sync_to_async``: works in the triggerer and under
``dag.test()``); a restarted trigger that finds it reports ``outcome_unknown``
(with the session id it saw, if any) instead of paying for the run again, unless
``allow_resubmit=True``. The operator writes state ``"deferred"`` before deferring, so the first
trigger finds a marker that says "nothing sent yet". When no marker can be read or written the
trigger logs a warning and proceeds.

Events (``TriggerEvent.payload``):

* ``{"status": "success", "result": <run response as Docify sent it>, "session_id": ...}``
* ``{"status": "error", "error_type": "<DocifyError subclass>", "message": ..., "session_id": ...,
  "run_id": ..., "detail": {...}}``
* ``{"status": "outcome_unknown", "message": ..., "session_id": ...}``

Payloads are ``EventPayload`` dicts: whole to every consumer, but with a one-line ``repr``, because the
triggerer writes each event into the task log as ``Trigger fired event name=... result=TriggerEvent<
{payload!r}>`` and a full run reply (attachment URLs and all) made that line hundreds of characters.

``DocifyScenarioAvailableTrigger`` polls ``GET /v1/scenario/info`` for ``DocifyScenarioSensor``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from docify_provider.xcom import LEGACY_STREAM_MARKER_XCOM_KEY, STREAM_MARKER_XCOM_KEY, stream_marker

_STREAM_CLASSPATH = "docify_provider.triggers.docify.DocifyStreamTrigger"
_AVAILABLE_CLASSPATH = "docify_provider.triggers.docify.DocifyScenarioAvailableTrigger"
#: Event types kept in an error event's ``detail["events_seen"]`` (the last ones).
_EVENTS_SEEN_KEPT = 50


#: Longest string shown whole in an event payload's ``repr`` (longer ones are cut, with their length).
_REPR_TEXT = 80


def _brief(key: Any, value: Any) -> str:
    """One short token for ``value`` in an ``EventPayload`` repr."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= _REPR_TEXT else f"{value[: _REPR_TEXT - 1]!r}... ({len(value)} chars)"
    size = len(json.dumps(value, default=str))
    if key == "result" and isinstance(value, Mapping) and "runId" in value:
        files = value.get("files")
        count = len(files) if isinstance(files, list) else 0
        return (
            f"<Docify run {value.get('runId')}: isSuccess={value.get('isSuccess')}, {count} file(s), "
            f"{size} chars, passed whole to the task>"
        )
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

    def __repr__(self) -> str:
        try:
            return "{" + ", ".join(f"{key!r}: {_brief(key, value)}" for key, value in self.items()) + "}"
        except Exception:  # a repr must never break the log line it is part of
            return f"<Docify trigger event with keys {sorted(map(str, self))}>"


def _event(payload: Mapping[str, Any]) -> TriggerEvent:
    return TriggerEvent(EventPayload(payload))


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def error_to_event(exc: BaseException, *, session_id: str | None = None, posted: bool = True) -> dict[str, Any]:
    """A ``status: error`` payload describing ``exc`` (JSON only; rebuilt by ``error_from_event``)."""
    from docify_provider.client.errors import DocifyError

    if isinstance(exc, DocifyError):
        error_type = type(exc).__name__
        detail: dict[str, Any] = {}
        for key, value in vars(exc).items():
            if hasattr(value, "raw") and isinstance(value.raw, dict):
                value = value.raw  # e.g. the RunResult of a failed run
            if key == "events_seen" and isinstance(value, list) and len(value) > _EVENTS_SEEN_KEPT:
                # An endless stream sees thousands of events; the trigger event is stored in the
                # metadata DB, so keep only the last few and the count.
                detail["events_seen_count"] = len(value)
                value = value[-_EVENTS_SEEN_KEPT:]
            if _json_safe(value):
                detail[key] = value
        message = str(exc)
    else:
        # Not ours (a bug, a library error): once the request may have gone out, the outcome is unknown.
        error_type = "DocifyOutcomeUnknownError" if posted else "DocifyError"
        detail = {}
        message = f"{type(exc).__name__}: {exc}"
        if posted:
            message += " (the run request may have reached Docify; it is not re-sent automatically)"
    return {
        "status": "error",
        "error_type": error_type,
        "message": message,
        "session_id": session_id or detail.get("session_id"),
        "run_id": detail.get("run_id"),
        "detail": detail,
    }


def error_from_event(event: Mapping[str, Any]) -> Exception:
    """The ``DocifyError`` subclass an ``error`` / ``outcome_unknown`` trigger event stands for."""
    from docify_provider.client import errors

    status = event.get("status")
    message = str(event.get("message") or f"Docify stream trigger reported {status!r}")
    if status == "outcome_unknown":
        return errors.DocifyOutcomeUnknownError(message, session_id=event.get("session_id"))
    cls = getattr(errors, str(event.get("error_type") or ""), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.DocifyError)):
        cls = errors.DocifyError
    exc = cls.__new__(cls)
    # Defaults for every attribute the hierarchy defines, then what the trigger saw.
    exc.__dict__.update(
        {
            "message": message,
            "status_code": None,
            "endpoint": None,
            "server_message": None,
            "retry_after": None,
            "request_sent": True,
            "session_id": event.get("session_id"),
            "run_id": event.get("run_id"),
            "events_seen": [],
            "error": None,
            "result": None,
            "problems": [],
        }
    )
    exc.__dict__.update(dict(event.get("detail") or {}))
    for key in ("session_id", "run_id"):
        if exc.__dict__.get(key) is None and event.get(key) is not None:
            exc.__dict__[key] = event[key]
    Exception.__init__(exc, message)
    return exc


def _marker_says_deferred(marker: Any) -> bool:
    """The operator's ``{"state": "deferred"}`` marker: no trigger has sent the run yet."""
    return isinstance(marker, dict) and marker.get("state") == "deferred"


def _xcom_class() -> Any:
    from airflow.providers.common.compat.sdk import XCom

    return XCom


class DocifyStreamTrigger(BaseTrigger):
    """Stream one Docify run from the triggerer and fire one event with its outcome.

    :param inputs: wire-format inputs (``{var: {"text": ...} | {"files": [...]}}``), already
        validated and uploaded by the operator.
    :param docify_conn_id: connection to resolve (the key never travels in the trigger's kwargs).
    :param user: Docify user identifier.
    :param additional_info: JSON ``additionalInfo``.
    :param allow_resubmit: POST even when a marker shows an earlier trigger already sent the run.
    :param idle_timeout: seconds without an event before giving up (default: the connection's).
    :param dag_id: task instance identity for the restart-guard marker, used when the triggerer
        does not attach ``task_instance`` (``dag.test()``).
    :param task_id: see ``dag_id``.
    :param run_id: see ``dag_id``.
    :param map_index: see ``dag_id``.
    :param try_number: the try that deferred; every event carries it back as ``deferred_in_try``, so
        that a later try handed this event (Airflow 3.0 keeps it on retry) can tell.
    """

    def __init__(
        self,
        *,
        inputs: Mapping[str, Any] | None,
        docify_conn_id: str = "docify_default",
        user: str | None = None,
        additional_info: Any = None,
        allow_resubmit: bool = False,
        idle_timeout: float | None = None,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int = -1,
        try_number: int | None = None,
    ) -> None:
        super().__init__()
        self.inputs = dict(inputs or {})
        self.docify_conn_id = docify_conn_id
        self.user = user
        self.additional_info = additional_info
        self.allow_resubmit = allow_resubmit
        self.idle_timeout = idle_timeout
        self.dag_id = dag_id
        self.task_id = task_id
        self.run_id = run_id
        self.map_index = -1 if map_index is None else int(map_index)
        self.try_number = try_number

    def _fire(self, payload: Mapping[str, Any]) -> TriggerEvent:
        return _event({**payload, "deferred_in_try": self.try_number})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            _STREAM_CLASSPATH,
            {
                "inputs": self.inputs,
                "docify_conn_id": self.docify_conn_id,
                "user": self.user,
                "additional_info": self.additional_info,
                "allow_resubmit": self.allow_resubmit,
                "idle_timeout": self.idle_timeout,
                "dag_id": self.dag_id,
                "task_id": self.task_id,
                "run_id": self.run_id,
                "map_index": self.map_index,
                "try_number": self.try_number,
            },
        )

    # -- restart guard --------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any] | None:
        ti = self.task_instance
        if ti is not None and getattr(ti, "run_id", None):
            map_index = getattr(ti, "map_index", -1)
            return {
                "dag_id": ti.dag_id,
                "task_id": ti.task_id,
                "run_id": ti.run_id,
                "map_index": -1 if map_index is None else int(map_index),
            }
        if self.dag_id and self.task_id and self.run_id:
            return {"dag_id": self.dag_id, "task_id": self.task_id, "run_id": self.run_id, "map_index": self.map_index}
        return None

    async def _read_marker(self, ident: Mapping[str, Any] | None) -> Any:
        if ident is None:
            self.log.warning("Docify stream trigger: no task instance identity; restart guard disabled")
            return None
        from asgiref.sync import sync_to_async

        get_one = sync_to_async(_xcom_class().get_one)
        try:
            marker = await get_one(key=STREAM_MARKER_XCOM_KEY, **ident)
        except Exception as exc:
            self.log.warning("Docify stream trigger: cannot read the restart marker (%s); proceeding", exc)
            return None
        if marker is not None:
            return marker
        # No marker under the current key: the task deferred under an earlier build, which kept it
        # under the old key (and whose trigger may have sent the run). Only then is the old key read:
        # Airflow logs every XCom it does not find at error level, in every trigger's log.
        try:
            return await get_one(key=LEGACY_STREAM_MARKER_XCOM_KEY, **ident)
        except Exception as exc:
            self.log.warning("Docify stream trigger: cannot read the restart marker's old key (%s)", exc)
            return None

    async def _write_marker(self, ident: Mapping[str, Any] | None, value: dict[str, Any]) -> bool:
        if ident is None:
            return False
        from asgiref.sync import sync_to_async

        try:
            await sync_to_async(_xcom_class().set)(key=STREAM_MARKER_XCOM_KEY, value=value, **ident)
        except Exception as exc:
            self.log.warning(
                "Docify stream trigger: cannot write the restart marker (%s); proceeding without the guard "
                "(a triggerer restart could re-send this run)",
                exc,
            )
            return False
        return True

    # -- run ------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ident = self._identity()
        marker = await self._read_marker(ident)
        # {"state": "deferred"} is written by the operator before deferring: nothing sent yet.
        if marker is not None and not _marker_says_deferred(marker):
            session = marker.get("session_id") if isinstance(marker, dict) else None
            if not self.allow_resubmit:
                seen = f" (session {session})" if session else " (no session id was received)"
                message = (
                    f"Docify run outcome unknown: an earlier trigger of this task instance already sent the run "
                    f"request at {marker.get('sent_at') if isinstance(marker, dict) else '?'}{seen}, and its result "
                    "never arrived (triggerer restart?). The run may have been started and billed, so it is not "
                    "re-sent; set allow_resubmit=True or clear the task state to pay for a new run."
                )
                self.log.error("%s", message)
                yield self._fire({"status": "outcome_unknown", "message": message, "session_id": session})
                return
            self.log.warning(
                "Docify stream trigger: an earlier trigger already sent this run%s; allow_resubmit=True, "
                "sending it again",
                f" (session {session})" if session else "",
            )

        from docify_provider.hooks.docify import DocifyHook

        sent_at = datetime.now(tz=timezone.utc).isoformat()
        await self._write_marker(ident, stream_marker("sent", sent_at=sent_at, session_id=None))
        session_id: str | None = None
        posted = False
        result: Any = None
        hook = DocifyHook(docify_conn_id=self.docify_conn_id)
        try:
            if self.idle_timeout:
                config = await hook.aget_config()
                hook.config = dataclasses.replace(config, idle_timeout=float(self.idle_timeout))
            from docify_provider.operators.docify import log_stream_event

            self.log.info("Sending Docify run (streaming, deferred) for user %s", self.user)
            # The triggerer runs many triggers in one event loop: streams of one connection share
            # one HTTP client there (built by the first, closed when the last ends).
            stream = hook.astream_scenario(
                self.inputs, user=self.user, additional_info=self.additional_info, shared_client=True
            )
            posted = True
            try:
                async for event in stream:
                    # The marker is written before the event is logged, so a log line that shows the
                    # session id means the restart guard already holds it.
                    if session_id is None and event.session_id:
                        session_id = event.session_id
                        await self._write_marker(ident, stream_marker("sent", sent_at=sent_at, session_id=session_id))
                    log_stream_event(self.log, event)
                    if event.type == "COMPLETE" and event.response is not None:
                        result = event.response
            finally:
                # Closes the HTTP stream and client, also on cancellation (on_kill, timeouts).
                await stream.aclose()  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            self.log.warning(
                "Docify stream trigger cancelled; the stream was closed. The run may still finish on Docify%s.",
                f" (session {session_id})" if session_id else "",
            )
            raise
        except Exception as exc:
            self.log.error("Docify stream failed: %s", exc)
            yield self._fire(error_to_event(exc, session_id=session_id, posted=posted))
            return
        if result is None:
            from docify_provider.client.errors import DocifyStreamIncompleteError

            yield self._fire(
                error_to_event(
                    DocifyStreamIncompleteError("The Docify stream ended without a result", session_id=session_id),
                    session_id=session_id,
                )
            )
            return
        yield self._fire({"status": "success", "result": result.raw, "session_id": session_id})


class DocifyScenarioAvailableTrigger(BaseTrigger):
    """Poll ``GET /v1/scenario/info`` until it answers (and offers ``expected_parameters``).

    Fires ``{"status": "success", "scenario": <summary>}``, ``{"status": "error", ...}`` at once on a
    rejected key (401/403) or an unusable connection, or ``{"status": "timeout", ...}`` after
    ``timeout`` seconds.
    """

    def __init__(
        self,
        *,
        docify_conn_id: str = "docify_default",
        expected_parameters: Sequence[str] | None = None,
        poke_interval: float = 60.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.docify_conn_id = docify_conn_id
        self.expected_parameters = list(expected_parameters) if expected_parameters else None
        self.poke_interval = float(poke_interval)
        self.timeout = None if timeout is None else float(timeout)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            _AVAILABLE_CLASSPATH,
            {
                "docify_conn_id": self.docify_conn_id,
                "expected_parameters": self.expected_parameters,
                "poke_interval": self.poke_interval,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from docify_provider.client import AsyncDocifyClient
        from docify_provider.client.errors import DocifyAuthenticationError, DocifyConfigError, DocifyError
        from docify_provider.hooks.docify import DocifyHook
        from docify_provider.xcom import scenario_summary

        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        hook = DocifyHook(docify_conn_id=self.docify_conn_id)
        try:
            # One attempt per poll: this loop is the retry policy.
            config = dataclasses.replace(await hook.aget_config(), max_retries=0)
        except DocifyError as exc:
            yield _event(error_to_event(exc, posted=False))
            return
        client = AsyncDocifyClient(config)
        try:
            while True:
                try:
                    info = await client.get_scenario_info()
                except (DocifyAuthenticationError, DocifyConfigError) as exc:
                    yield _event(error_to_event(exc, posted=False))
                    return
                except DocifyError as exc:
                    self.log.info("Docify scenario not available yet: %s", exc)
                else:
                    offered = {p.variable for p in info.parameters}
                    missing = [p for p in self.expected_parameters or [] if p not in offered]
                    if not missing:
                        self.log.info("Docify scenario %s is available", info.scenario_code or info.scenario_id)
                        yield _event({"status": "success", "scenario": scenario_summary(info)})
                        return
                    self.log.info(
                        "Docify scenario %s does not offer %s yet (offers %s)",
                        info.scenario_code,
                        missing,
                        sorted(offered),
                    )
                if deadline is not None and time.monotonic() + self.poke_interval > deadline:
                    yield _event(
                        {
                            "status": "timeout",
                            "message": f"Docify scenario not available after {self.timeout:g}s",
                        }
                    )
                    return
                await asyncio.sleep(self.poke_interval)
        finally:
            await client.aclose()


__all__ = [
    "DocifyScenarioAvailableTrigger",
    "DocifyStreamTrigger",
    "EventPayload",
    "error_from_event",
    "error_to_event",
]
