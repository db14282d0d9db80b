"""Triggers behind the deferrable Docify operator and sensor.

``DocifyStreamTrigger`` holds a streaming run in the triggerer: thousands of streams share one
event loop instead of one worker slot each. Its kwargs carry only the wire inputs (already
validated and uploaded on the worker), the connection id and run options: never the API key,
which the trigger resolves from the connection itself.

A trigger may be restarted (triggerer crash, redeploy) and Docify has no idempotency key, so
before it POSTs the run the trigger writes an XCom marker (``docify_run_request_sent``, state
``"sent"``, with a sentence saying what it guards, as users see it in the XCom tab; the key
``docify_stream_marker`` of earlier builds is still read) for its own task instance
(``base._marker_calls``: Airflow 3.3's async XCom calls in a triggerer, else ``XCom.set``
through ``asgiref.sync_to_async``); a restarted trigger that finds it reports ``outcome_unknown``
(with the session id it saw, if any) instead of paying for the run again, unless
``allow_resubmit=True``. The operator writes state ``"deferred"`` before deferring, so the first
trigger finds a marker that says "nothing sent yet". A marker that cannot be read fails closed
(nothing is sent; ``trigger_failed`` with ``sent`` unknown hands the decision to the worker); one
that cannot be written is logged and the trigger proceeds. The loop is ``triggers/base.py``'s.

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
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from docify_provider.durable.policy import DOCIFY
from docify_provider.events import EventPayload, error_from_event, error_to_event, register_result_summary
from docify_provider.triggers.base import RunProgress, RunSpec, RunTrigger, fire
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


class DocifyStreamTrigger(RunTrigger):
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
    :param max_wait_not_started: seconds a run request turned away (429, not started) is waited on and
        sent again (the operator's; 0, the default of earlier builds' kwargs: fail at once).
    :param not_started_deadline: ``time.time()`` at which the task's ``execution_timeout`` ends; no
        wait passes it.
    """

    marker_key = STREAM_MARKER_XCOM_KEY
    legacy_marker_key = LEGACY_STREAM_MARKER_XCOM_KEY
    log_label = "Docify stream trigger"
    label = "Docify"
    policy_backend = DOCIFY
    batch_operator = "DocifyBatchScenarioOperator"

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
        max_wait_not_started: float = 0.0,
        not_started_deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.inputs = dict(inputs or {})
        self.docify_conn_id = docify_conn_id
        self.max_wait_not_started = max_wait_not_started
        self.not_started_deadline = not_started_deadline
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
                "max_wait_not_started": self.max_wait_not_started,
                "not_started_deadline": self.not_started_deadline,
                **self._identity_kwargs(),
            },
        )

    # -- what differs from the shared run loop (triggers/base.py) --------------------------------

    def _spec(self) -> RunSpec:
        options = {"additional_info": self.additional_info, "idle_timeout": self.idle_timeout}
        return RunSpec(
            inputs=self.inputs,
            user=self.user,
            allow_resubmit=self.allow_resubmit,
            options=options,
            max_wait_not_started=self.max_wait_not_started,
            not_started_deadline=self.not_started_deadline,
        )

    def _root(self) -> Any:
        from docify_provider.docify.errors import DocifyError

        return DocifyError

    def _new_hook(self) -> Any:
        from docify_provider.hooks.docify import DocifyHook

        return DocifyHook(docify_conn_id=self.docify_conn_id)

    def _client_overrides(self, spec: RunSpec) -> dict[str, Any]:
        idle = spec.options.get("idle_timeout")
        return {"idle_timeout": float(idle)} if idle else {}

    def _open(self, client: Any, progress: RunProgress) -> AsyncIterator[Any]:
        spec = progress.spec  # Docify cannot re-attach: the policy never hands this loop a run id to follow
        return client.stream(spec.inputs, user=spec.user, additional_info=spec.options.get("additional_info"))

    def _event_ids(self, event: Any) -> tuple[str | None, str | None]:
        return event.session_id, None

    def _narrate(self, event: Any) -> None:
        from docify_provider.docify.narration import log_stream_event

        log_stream_event(self.log, event)

    def _record(self, event: Any, progress: RunProgress) -> bool:
        if event.type == "COMPLETE" and event.response is not None:
            progress.result = event.response
        return False

    def _marker(self, progress: RunProgress) -> dict[str, Any]:
        return stream_marker("sent", sent_at=progress.sent_at, session_id=progress.run_id)

    def _unsent_marker(self) -> dict[str, Any]:
        from docify_provider.durable.ledger import now_iso

        return stream_marker("deferred", deferred_at=now_iso())

    def _ids(self, run_id: str | None, task_id: str | None) -> dict[str, Any]:
        return {"session_id": run_id}

    def _success(self, progress: RunProgress) -> dict[str, Any]:
        return {"status": "success", "result": progress.result.raw, "session_id": progress.run_id}


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
        # The event is fired after the client is released: a runner that takes the first event and
        # drops the generator (dag.test()) would otherwise close the client from another task.
        yield _event(await self._poll())

    async def _poll(self) -> dict[str, Any]:
        from docify_provider.docify.errors import DocifyAuthenticationError, DocifyConfigError, DocifyError
        from docify_provider.hooks.docify import DocifyHook
        from docify_provider.xcom import scenario_summary

        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        hook = DocifyHook(docify_conn_id=self.docify_conn_id)
        try:
            await hook.aget_config()
        except DocifyError as exc:
            return error_to_event(exc, posted=False)
        # One attempt per poll: this loop is the retry policy.
        async with hook.async_client(max_retries=0) as client:
            while True:
                try:
                    info = await client.get_scenario_info()
                except (DocifyAuthenticationError, DocifyConfigError) as exc:
                    return error_to_event(exc, posted=False)
                except DocifyError as exc:
                    self.log.info("Docify scenario not available yet: %s", exc)
                else:
                    offered = {p.variable for p in info.parameters}
                    missing = [p for p in self.expected_parameters or [] if p not in offered]
                    if not missing:
                        self.log.info("Docify scenario %s is available", info.scenario_code or info.scenario_id)
                        return {"status": "success", "scenario": scenario_summary(info)}
                    self.log.info(
                        "Docify scenario %s does not offer %s yet (offers %s)",
                        info.scenario_code,
                        missing,
                        sorted(offered),
                    )
                if deadline is not None and time.monotonic() + self.poke_interval > deadline:
                    return {"status": "timeout", "message": f"Docify scenario not available after {self.timeout:g}s"}
                await asyncio.sleep(self.poke_interval)


__all__ = [
    "DocifyScenarioAvailableTrigger",
    "DocifyStreamTrigger",
    "EventPayload",
    "error_from_event",
    "error_to_event",
]
