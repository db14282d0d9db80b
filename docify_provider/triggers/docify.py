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
* ``{"status": "trigger_failed", "sent": ..., "message": ..., "session_id": ...}``: the trigger itself
  broke (its connection unreadable, checked before the marker says "sent"; an error that is not the
  run's); the worker says what is known (``RunOperatorBase._after_trigger_failure``).

Payloads are ``EventPayload`` dicts: whole to every consumer, but with a one-line ``repr``, because the
triggerer writes each event into the task log as ``Trigger fired event name=... result=TriggerEvent<
{payload!r}>`` and a full run reply (attachment URLs and all) made that line hundreds of characters.

``DocifyScenarioAvailableTrigger`` polls ``GET /v1/scenario/info`` for ``DocifyScenarioSensor``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from docify_provider.events import EventPayload, error_from_event, error_to_event, register_result_summary
from docify_provider.triggers.base import MarkerTrigger, fire, marker_says_deferred, trigger_failed
from docify_provider.xcom import LEGACY_STREAM_MARKER_XCOM_KEY, STREAM_MARKER_XCOM_KEY, stream_marker

_STREAM_CLASSPATH = "docify_provider.triggers.docify.DocifyStreamTrigger"
_AVAILABLE_CLASSPATH = "docify_provider.triggers.docify.DocifyScenarioAvailableTrigger"


def _docify_result_summary(value: Mapping[str, Any], size: int) -> str | None:
    """A Docify run response in an ``EventPayload`` repr."""
    if "runId" not in value:
        return None
    files = value.get("files")
    count = len(files) if isinstance(files, list) else 0
    return (
        f"<Docify run {value.get('runId')}: isSuccess={value.get('isSuccess')}, {count} file(s), "
        f"{size} chars, passed whole to the task>"
    )


register_result_summary(_docify_result_summary)
_event = fire


class DocifyStreamTrigger(MarkerTrigger):
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

    marker_key = STREAM_MARKER_XCOM_KEY
    legacy_marker_key = LEGACY_STREAM_MARKER_XCOM_KEY
    log_label = "Docify stream trigger"

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
        self._set_identity(dag_id, task_id, run_id, map_index, try_number)

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
                **self._identity_kwargs(),
            },
        )

    # -- run ------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ident = self._identity()
        marker = await self._read_marker(ident)
        # {"state": "deferred"} is written by the operator before deferring: nothing sent yet.
        if marker is not None and not marker_says_deferred(marker):
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

        hook = DocifyHook(docify_conn_id=self.docify_conn_id)
        failed = await self._connection_failed(hook, sent=False, session_id=None)
        if failed is not None:
            yield failed
            return
        sent_at = datetime.now(tz=timezone.utc).isoformat()
        await self._write_marker(ident, stream_marker("sent", sent_at=sent_at, session_id=None))
        session_id: str | None = None
        posted = False
        result: Any = None
        try:
            if self.idle_timeout:
                config = await hook.aget_config()
                hook.config = dataclasses.replace(config, idle_timeout=float(self.idle_timeout))
            from docify_provider.docify.narration import log_stream_event

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
            from docify_provider._core.errors import ProviderError

            if not isinstance(exc, ProviderError):  # the trigger broke, not the run: the worker says what is known
                yield self._fire(trigger_failed(exc, sent=posted, session_id=session_id))
                return
            yield self._fire(error_to_event(exc, session_id=session_id, posted=posted))
            return
        if result is None:
            from docify_provider.docify.errors import DocifyStreamIncompleteError

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
        from docify_provider.docify import AsyncDocifyClient
        from docify_provider.docify.errors import DocifyAuthenticationError, DocifyConfigError, DocifyError
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
