"""Triggers behind the deferrable Dify operators and sensor.

``DifyWorkflowTrigger`` holds a streamed run in the triggerer. Its kwargs carry the wire inputs
(validated and uploaded on the worker), the connection id and the run options, never the key.
Before it sends, it writes the XCom marker ``dify_run_request_sent`` (state ``"sent"``) and, at
``workflow_started``, the run's ``workflow_run_id`` and ``task_id``; a restarted trigger that
finds a run id re-attaches to that run instead of sending again (no id: outcome unknown, unless
``allow_resubmit``). Cancellation (a triggerer shutting down) closes the stream and stops nothing.

``DifyWorkflowRunTrigger`` polls ``GET /workflows/run/{id}`` until the run has ended: for
``DifyWorkflowRunSensor`` and for a run operator waiting on a human-input pause.

Events: ``{"status": "success", "run": <run record>, "workflow_run_id", "task_id"}``,
``{"status": "paused", "form": {...}, ...}``, ``{"status": "error", ...}`` (see
:mod:`docify_provider.events`), ``{"status": "outcome_unknown", ...}``, ``{"status": "timeout", ...}``,
and ``{"status": "trigger_failed", "sent", "message", "workflow_run_id", "task_id"}`` when the trigger
itself broke (its connection unreadable in the triggerer, checked before anything is sent, or an
error that is not the run's): the worker then follows the run (``RunOperatorBase._after_trigger_failure``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import TriggerEvent

from docify_provider.events import error_to_event, register_result_summary
from docify_provider.triggers.base import MarkerTrigger, marker_says_deferred, trigger_failed
from docify_provider.xcom import DIFY_MARKER_XCOM_KEY, dify_marker

_STREAM_CLASSPATH = "docify_provider.triggers.dify.DifyWorkflowTrigger"
_RUN_CLASSPATH = "docify_provider.triggers.dify.DifyWorkflowRunTrigger"


def _dify_run_summary(value: Mapping[str, Any], size: int) -> str | None:
    body = value.get("body")
    if not isinstance(body, Mapping):
        return None
    data: Mapping[str, Any] = body["data"] if isinstance(body.get("data"), Mapping) else body
    return f"<Dify run {data.get('id') or body.get('workflow_run_id')}: {data.get('status')}, {size} chars>"


register_result_summary(_dify_run_summary)


def _root() -> Any:
    from docify_provider.dify.errors import DifyError

    return DifyError


class DifyWorkflowTrigger(MarkerTrigger):
    """Stream one Dify run (or re-attach to ``workflow_run_id``) and fire one event with its outcome."""

    marker_key = DIFY_MARKER_XCOM_KEY
    log_label = "Dify stream trigger"

    def __init__(
        self,
        *,
        inputs: Mapping[str, Any] | None,
        dify_conn_id: str = "dify_default",
        user: str | None = None,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
        allow_resubmit: bool = False,
        workflow_run_id: str | None = None,
        dify_task_id: str | None = None,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int = -1,
        try_number: int | None = None,
    ) -> None:
        super().__init__()
        self.inputs = dict(inputs or {})
        self.dify_conn_id = dify_conn_id
        self.user = user
        self.files = files
        self.workflow_id = workflow_id
        self.allow_resubmit = allow_resubmit
        self.workflow_run_id = workflow_run_id
        self.dify_task_id = dify_task_id
        self._set_identity(dag_id, task_id, run_id, map_index, try_number)
        #: The ids of the run this trigger is streaming, once known (for ``on_kill``).
        self._live: tuple[str | None, str | None] = (workflow_run_id, dify_task_id)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            _STREAM_CLASSPATH,
            {
                "inputs": self.inputs,
                "dify_conn_id": self.dify_conn_id,
                "user": self.user,
                "files": self.files,
                "workflow_id": self.workflow_id,
                "allow_resubmit": self.allow_resubmit,
                "workflow_run_id": self.workflow_run_id,
                "dify_task_id": self.dify_task_id,
                **self._identity_kwargs(),
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from docify_provider.dify.models import run_record
        from docify_provider.durable.ledger import now_iso

        ident = self._identity()
        attach_to, dify_task = self.workflow_run_id, self.dify_task_id
        failed = await self._connection_failed(
            self._hook(), sent=bool(attach_to), workflow_run_id=attach_to, task_id=dify_task
        )
        if failed is not None:
            yield failed
            return
        sent_at = now_iso()
        if not attach_to:
            marker = await self._read_marker(ident)
            if isinstance(marker, dict) and not marker_says_deferred(marker):
                if marker.get("workflow_run_id"):
                    attach_to, dify_task = str(marker["workflow_run_id"]), marker.get("task_id")
                    self.log.warning("An earlier trigger started Dify run %s; re-attaching to it", attach_to)
                elif not self.allow_resubmit:
                    message = (
                        "Dify run outcome unknown: an earlier trigger of this task instance sent the run request at "
                        f"{marker.get('sent_at')} and no run id arrived (triggerer restart?); it is not re-sent. "
                        "Set allow_resubmit=True or clear the task state to start a new run."
                    )
                    self.log.error("%s", message)
                    yield self._fire({"status": "outcome_unknown", "message": message})
                    return
            if not attach_to:
                await self._write_marker(ident, dify_marker("sent", sent_at=sent_at))
        run_id, result = attach_to, None
        paused: dict[str, Any] | None = None
        try:
            self.log.info(
                "%s Dify run (streaming, deferred) for user %s",
                f"Re-attaching to {attach_to}" if attach_to else "Sending",
                self.user,
            )
            stream = self._stream(attach_to, dify_task)
            try:
                async for event in stream:
                    if (event.workflow_run_id and event.workflow_run_id != run_id) or (event.task_id and not dify_task):
                        run_id, dify_task = event.workflow_run_id or run_id, event.task_id or dify_task
                        self._live = (run_id, dify_task)
                        # Written before the event is logged: a log line with the id means the guard holds it.
                        await self._write_marker(
                            ident, dify_marker("sent", sent_at=sent_at, workflow_run_id=run_id, task_id=dify_task)
                        )
                    self._observe(event)
                    if event.event == "workflow_finished":
                        result = getattr(event, "result", None) or event.run
                    elif event.event == "workflow_paused":
                        form = event.form
                        paused = {
                            "status": "paused",
                            "workflow_run_id": run_id,
                            "task_id": dify_task,
                            "form": form.as_dict() if form else {},
                        }
                        break
            finally:
                # Closed before the event is fired: a runner that takes the first event and drops
                # the generator (dag.test()) would otherwise close it on another task at loop shutdown.
                await stream.aclose()  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            self.log.warning("Dify stream trigger cancelled; the stream was closed, the run was not stopped")
            raise
        except Exception as exc:
            self.log.error("Dify stream failed: %s", exc)
            from docify_provider._core.errors import ProviderError

            if not isinstance(exc, ProviderError):  # the trigger broke, not the run: the worker takes over
                yield self._fire(trigger_failed(exc, sent=True, workflow_run_id=run_id, task_id=dify_task))
                return
            payload = error_to_event(exc, session_id=run_id, root=_root())
            yield self._fire({**payload, "workflow_run_id": run_id, "task_id": dify_task})
            return
        if paused is not None:
            yield self._fire(paused)
            return
        if result is None:
            from docify_provider.dify.errors import DifyStreamIncompleteError

            incomplete = DifyStreamIncompleteError(
                "The Dify stream ended without a result", run_id=run_id, session_id=run_id
            )
            payload = error_to_event(incomplete, root=_root())
            yield self._fire({**payload, "workflow_run_id": run_id, "task_id": dify_task})
            return
        record = run_record(result)
        yield self._fire(
            self._success({"status": "success", "run": record, "workflow_run_id": run_id, "task_id": dify_task})
        )

    # -- what a subclass for another Dify API changes ------------------------------------------

    def _hook(self) -> Any:
        """This trigger's hook, made once: its connection is resolved before anything is sent."""
        hook = self.__dict__.get("_hook_made")
        if hook is None:
            hook = self.__dict__["_hook_made"] = self._new_hook()
        return hook

    def _new_hook(self) -> Any:
        from docify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=self.dify_conn_id)

    def _stream(self, attach_to: str | None, dify_task: str | None) -> AsyncIterator[Any]:
        """The run's events: sent now, or re-attached to ``attach_to`` (Service API)."""
        return self._hook().astream_workflow(
            self.inputs,
            user=self.user,
            files=self.files,
            workflow_id=self.workflow_id,
            attach_to=attach_to,
            task_id=dify_task,
        )

    def _observe(self, event: Any) -> None:
        """Each event, once its ids are in the marker: one task-log line."""
        from docify_provider.dify.narration import log_workflow_event

        log_workflow_event(self.log, event)

    def _success(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The success event (a subclass adds what its operator needs)."""
        return payload

    async def _astop(self, dify_task: str, run_id: str | None) -> None:
        await self._hook().astop_task(dify_task, user=self.user, workflow_run_id=run_id)

    async def on_kill(self) -> None:
        """The deferred task was marked failed, cleared or marked succeeded (Airflow 3.3+): stop the run.

        Unlike a triggerer shutdown (``cleanup`` / cancellation, which stops nothing: another
        triggerer re-attaches), this is the user ending the task, so the Dify task is stopped with
        the run's ``user`` and the log says what its status really became (Dify answers success
        even when the run goes on).
        """
        run_id, dify_task = self._live
        if not dify_task:
            self.log.warning("Dify stream trigger killed before Dify named the task: nothing to stop")
            return
        try:
            await self._astop(dify_task, run_id)
        except Exception as exc:
            self.log.warning("Stopping Dify task %s (run %s) failed: %s", dify_task, run_id, exc)


class DifyWorkflowRunTrigger(MarkerTrigger):
    """Poll a run's detail until it has ended (a pause keeps it waiting); fire its outcome.

    ``success`` for succeeded / partial-succeeded, ``error`` (``DifyRunFailedError``) for failed /
    stopped, ``timeout`` after ``timeout`` seconds.
    """

    marker_key = DIFY_MARKER_XCOM_KEY
    log_label = "Dify run trigger"

    def __init__(
        self,
        *,
        workflow_run_id: str,
        dify_conn_id: str = "dify_default",
        poll_interval: float = 30.0,
        timeout: float | None = None,
        try_number: int | None = None,
        form_title: str | None = None,
        form_expires_at: str | None = None,
    ) -> None:
        super().__init__()
        self.workflow_run_id = workflow_run_id
        self.dify_conn_id = dify_conn_id
        self.poll_interval = float(poll_interval)
        self.timeout = None if timeout is None else float(timeout)
        self.form_title = form_title
        self.form_expires_at = form_expires_at
        self._set_identity(None, None, None, -1, try_number)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            _RUN_CLASSPATH,
            {
                "workflow_run_id": self.workflow_run_id,
                "dify_conn_id": self.dify_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "try_number": self.try_number,
                "form_title": self.form_title,
                "form_expires_at": self.form_expires_at,
            },
        )

    def _form_expired(self) -> bool:
        """The run waits on a human-input form whose expiry (ISO time) has passed."""
        from docify_provider.hitl_reattach import expired

        return expired(self.form_expires_at)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from docify_provider.dify.errors import DifyError
        from docify_provider.dify.models import run_record
        from docify_provider.dify.stream import raise_if_failed
        from docify_provider.hooks.dify import DifyHook

        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        hook = DifyHook(dify_conn_id=self.dify_conn_id)
        ids = {"workflow_run_id": self.workflow_run_id}
        last = None
        while True:
            try:
                run = await hook.aget_workflow_run(self.workflow_run_id)
            except DifyError as exc:
                if exc.permanent:
                    yield self._fire({**error_to_event(exc, posted=False, root=_root()), **ids})
                    return
                self.log.info("Dify run %s not readable yet: %s", self.workflow_run_id, exc)
            else:
                if run.status != last:
                    self.log.info("Dify run %s is %s", self.workflow_run_id, run.status)
                    last = run.status
                if run.ended:
                    try:
                        raise_if_failed(run, "run_detail")
                    except DifyError as exc:
                        yield self._fire({**error_to_event(exc, posted=False, root=_root()), **ids})
                        return
                    yield self._fire({"status": "success", "run": run_record(run), **ids, "task_id": run.task_id})
                    return
                if run.paused and self._form_expired():
                    from docify_provider.dify.errors import DifyPausedError

                    expired = DifyPausedError(
                        f"Dify run {self.workflow_run_id} paused for human input: the form {self.form_title!r} "
                        f"expired at {self.form_expires_at} without an answer; the run stays paused on Dify. "
                        "Nothing more can resume it through this form.",
                        run_id=self.workflow_run_id,
                        form={"title": self.form_title, "expiration_time": self.form_expires_at},
                    )
                    self.log.error("%s", expired)
                    yield self._fire({**error_to_event(expired, posted=False, root=_root()), **ids})
                    return
            if deadline is not None and time.monotonic() + self.poll_interval > deadline:
                message = f"Dify run {self.workflow_run_id} had not ended after {self.timeout:g}s"
                yield self._fire({"status": "timeout", "message": message, **ids})
                return
            await asyncio.sleep(self.poll_interval)


__all__ = ["DifyWorkflowRunTrigger", "DifyWorkflowTrigger"]
