"""Triggers behind the deferrable Dify operators and sensor.

``DifyWorkflowTrigger`` holds a streamed run in the triggerer. Its kwargs carry the wire inputs
(validated and uploaded on the worker), the connection id and the run options, never the key.
Before it sends, it writes the XCom marker ``dify_run_request_sent`` (state ``"sent"``) and, at
``workflow_started``, the run's ``workflow_run_id`` and ``task_id``; a restarted trigger that
finds a run id re-attaches to that run instead of sending again (no id: outcome unknown, unless
``allow_resubmit``; a marker that cannot be read: nothing is sent, the worker decides). The loop is
``triggers/base.py``'s (``RunTrigger``); ``DifyRunTriggerBase`` adds Dify's events, pause and stop,
shared with the account API's ``DifyAppRunTrigger``. Cancellation (a triggerer shutting down)
closes the stream and stops nothing.

``DifyWorkflowRunTrigger`` polls ``GET /workflows/run/{id}`` until the run has ended: for
``DifyWorkflowRunSensor`` and for a run operator waiting on a human-input pause.

Events: ``{"status": "success", "run": <run record>, "workflow_run_id", "task_id"}``,
``{"status": "paused", "form": {...}, ...}``, ``{"status": "error", ...}`` (see
:mod:`docify_provider.events`), ``{"status": "outcome_unknown", ...}``, ``{"status": "timeout", ...}``,
and ``{"status": "trigger_failed", "sent" (None: unknown), "message", "workflow_run_id", "task_id"}`` when the trigger
itself broke (its connection unreadable in the triggerer, checked before anything is sent, or an
error that is not the run's): the worker then follows the run (``RunOperatorBase._after_trigger_failure``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import TriggerEvent

from docify_provider.durable.policy import DIFY
from docify_provider.events import error_to_event, register_result_summary
from docify_provider.triggers.base import MarkerTrigger, RunProgress, RunSpec, RunTrigger
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


class DifyRunTriggerBase(RunTrigger):
    """The run loop over Dify's workflow events: what the Service API and account API triggers share.

    Ids come from ``workflow_started`` (run and task), a run ends with ``workflow_finished`` (its
    result) or ``workflow_paused`` (a ``paused`` event naming the form), and ``on_kill`` stops the
    Dify task. A subclass names its hook, how it opens the run and how it stops it.
    """

    marker_key = DIFY_MARKER_XCOM_KEY
    label = "Dify"
    policy_backend = DIFY

    def _root(self) -> Any:
        from docify_provider.dify.errors import DifyError

        return DifyError

    def _event_ids(self, event: Any) -> tuple[str | None, str | None]:
        return event.workflow_run_id, event.task_id

    def _narrate(self, event: Any) -> None:
        from docify_provider.dify.narration import log_workflow_event

        log_workflow_event(self.log, event)

    def _record(self, event: Any, progress: RunProgress) -> bool:
        if event.event == "workflow_finished":
            progress.result = getattr(event, "result", None) or event.run
        elif event.event == "workflow_paused":
            form = event.form
            progress.final = {
                "status": "paused",
                **self._ids(progress.run_id, progress.task_id),
                "form": form.as_dict() if form else {},
            }
            return True
        return False

    def _marker(self, progress: RunProgress) -> dict[str, Any]:
        ids = {"workflow_run_id": progress.run_id, "task_id": progress.task_id} if progress.run_id else {}
        return dify_marker("sent", sent_at=progress.sent_at, **ids)

    def _unsent_marker(self) -> dict[str, Any]:
        from docify_provider.durable.ledger import now_iso

        return dify_marker("deferred", deferred_at=now_iso())

    def _ids(self, run_id: str | None, task_id: str | None) -> dict[str, Any]:
        return {"workflow_run_id": run_id, "task_id": task_id}

    def _success(self, progress: RunProgress) -> dict[str, Any]:
        from docify_provider.dify.models import run_record

        return {"status": "success", "run": run_record(progress.result), **self._ids(progress.run_id, progress.task_id)}

    async def _astop(self, client: Any, progress: RunProgress) -> None:
        """Stop the run's Dify task (and read what its status became)."""
        raise NotImplementedError

    async def on_kill(self) -> None:
        """The deferred task was marked failed, cleared or marked succeeded (Airflow 3.3+): stop the run.

        Unlike a triggerer shutdown (``cleanup`` / cancellation, which stops nothing: another
        triggerer re-attaches), this is the user ending the task, so the Dify task is stopped with
        the run's ``user`` and the log says what its status really became (Dify answers success
        even when the run goes on).
        """
        # Before the loop began (or a trigger whose kwargs name the run): the run its kwargs name.
        spec = self._spec()
        runs = self._following or [RunProgress(spec, spec.run_id, spec.task_id, sent_at="")]
        if not any(p.task_id for p in runs):
            self.log.warning("%s killed before Dify named the task: nothing to stop", self.log_label)
        for progress in runs:
            if not progress.task_id:
                continue
            try:
                async with self._hook().async_client() as client:
                    await self._astop(client, progress)
            except Exception as exc:
                self.log.warning("Stopping Dify task %s (run %s) failed: %s", progress.task_id, progress.run_id, exc)


class DifyWorkflowTrigger(DifyRunTriggerBase):
    """Stream one Dify run (or re-attach to ``workflow_run_id``) and fire one event with its outcome."""

    log_label = "Dify stream trigger"
    batch_operator = "DifyBatchWorkflowOperator"

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
        reattach: str | None = None,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int = -1,
        try_number: int | None = None,
        max_wait_not_started: float = 0.0,
        not_started_deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.reattach = reattach
        self.max_wait_not_started = max_wait_not_started
        self.not_started_deadline = not_started_deadline
        self.inputs = dict(inputs or {})
        self.dify_conn_id = dify_conn_id
        self.user = user
        self.files = files
        self.workflow_id = workflow_id
        self.allow_resubmit = allow_resubmit
        self.workflow_run_id = workflow_run_id
        self.dify_task_id = dify_task_id
        self._set_identity(dag_id, task_id, run_id, map_index, try_number)

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
                "reattach": self.reattach,
                "max_wait_not_started": self.max_wait_not_started,
                "not_started_deadline": self.not_started_deadline,
                **self._identity_kwargs(),
            },
        )

    def _spec(self) -> RunSpec:
        return RunSpec(
            inputs=self.inputs,
            run_id=self.workflow_run_id,
            task_id=self.dify_task_id,
            user=self.user,
            allow_resubmit=self.allow_resubmit,
            options={"files": self.files, "workflow_id": self.workflow_id},
            # A run id in the kwargs is always one an earlier try or a resume hands over (the
            # operator defers a new run before sending it); kwargs of earlier builds name no reason.
            reattach=self.reattach or ("an earlier try started it" if self.workflow_run_id else None),
            max_wait_not_started=self.max_wait_not_started,
            not_started_deadline=self.not_started_deadline,
        )

    def _new_hook(self) -> Any:
        from docify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=self.dify_conn_id)

    def _open(self, client: Any, progress: RunProgress) -> AsyncIterator[Any]:
        """Sent now, or re-attached to the run (Service API: events route, else the run detail)."""
        spec = progress.spec
        if progress.run_id:
            return client.attach(progress.run_id, user=str(spec.user), task_id=progress.task_id)
        options = spec.options
        return client.stream_workflow(
            spec.inputs, user=spec.user, files=options.get("files"), workflow_id=options.get("workflow_id")
        )

    async def _astop(self, client: Any, progress: RunProgress) -> None:
        await client.stop_task(progress.task_id, user=progress.spec.user, workflow_run_id=progress.run_id)


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
                async with hook.async_client() as client:
                    run = await client.get_workflow_run(self.workflow_run_id)
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
                    from docify_provider.dify.forms import readable_time

                    when = readable_time(self.form_expires_at) or "its expiry"
                    expired = DifyPausedError(
                        f"Dify run {self.workflow_run_id} paused for human input: the form {self.form_title!r} "
                        f"expired at {when} without an answer; the run stays paused on Dify. "
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


__all__ = ["DifyRunTriggerBase", "DifyWorkflowRunTrigger", "DifyWorkflowTrigger"]
