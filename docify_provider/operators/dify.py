"""Operators that run Dify workflows (Workflow Service API) and upload files.

* ``DifyRunWorkflowOperator``: one blocking ``POST /workflows/run``; a lost answer (502/504/524,
  reset, read timeout) is recovered from the app's logs by the client, never re-sent.
* ``DifyStreamWorkflowOperator``: the streaming run; node titles, statuses, elapsed times, tokens
  and prices and text chunks reach the task log as they arrive. ``deferrable=True`` holds the
  stream in the triggerer (``DifyWorkflowTrigger``).
* ``DifyUploadFileOperator``: ``POST /files/upload``; its XCom feeds a run's file inputs.

Both run operators return the same XCom dict (:func:`docify_provider.xcom.dify_run_to_xcom`) and
keep the bought-once ledger (``dify_state``): the intent before sending (fails closed), the
``task_id`` / ``workflow_run_id`` the moment they are known, the result at once. A retry that
finds a pending record with a run id re-attaches to that run (or takes its finished result)
instead of starting a new one; without a run id it fails with ``DifyOutcomeUnknownError`` unless
``allow_resubmit`` / ``force_rerun``. ``on_kill`` and ``execution_timeout`` stop the Dify task.

A run that pauses for human input fails with ``DifyPausedError`` (``on_pause="fail"``) or waits,
deferred, until someone answers the form (default ``on_pause="wait"``).

The flow is the shared Dify base's (``operators/dify_run.py``, also under the account API's
``DifyRunAppOperator``); this module adds the Service API's hook, input check, run requests,
triggers and stop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from docify_provider.dify.narration import log_workflow_event
from docify_provider.durable.ledger import now_iso
from docify_provider.durable.state import TaskState
from docify_provider.hooks.base import resolve_user
from docify_provider.operators.base import context_ti
from docify_provider.operators.dify_run import (
    DEFAULT_ASSET_ALIAS,
    EARLIER_TRY,
    RESUMED,
    DifyRunOperatorBase,
    paused_form,
)
from docify_provider.operators.fail_fast import fails_fast
from docify_provider.xcom import DIFY_MARKER_XCOM_KEY

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from docify_provider.dify.models import WorkflowRun
    from docify_provider.hooks.dify import DifyHook

DEFAULT_CONN_ID = "dify_default"


class DifyUploadFileOperator(BaseOperator):
    """Upload one file to Dify (``POST /files/upload``) and return ``UploadedFile.as_dict()``.

    Pass the XCom as a file input of a run operator (``inputs={"doc": upload.output}``).

    :param source: local path, ``ObjectStoragePath`` or storage URL; streamed. (templated)
    :param file_name: name sent to Dify; the source's name by default. (templated)
    :param user: Dify end-user id; default as for the run operators. (templated)
    :param dify_conn_id: Airflow connection of type ``dify``. (templated)
    """

    template_fields: Sequence[str] = ("dify_conn_id", "source", "file_name", "user")
    ui_color = "#e0f2fe"

    def __init__(
        self,
        *,
        source: Any,
        file_name: str | None = None,
        user: str | None = None,
        dify_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.file_name = file_name
        self.user = user
        self.dify_conn_id = dify_conn_id

    @cached_property
    def hook(self) -> DifyHook:
        from docify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=self.dify_conn_id)

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        try:
            uploaded = self.hook.upload_file(
                self.source, user=resolve_user(self, self.hook), file_name=self.file_name or None
            )
        finally:
            self.hook.close()
        from docify_provider._core.wording import sized

        self.log.info("Uploaded %s%s to Dify as %s", uploaded.name, sized(uploaded.size), uploaded.id)
        return uploaded.as_dict()


class _DifyServiceRunOperator(DifyRunOperatorBase):
    """The Service API's part of its run operators (not for direct use): its connection and hook,
    ``/parameters`` input checks, run-detail waits, its triggers, forms and stop.

    :param dify_conn_id: Airflow connection of type ``dify``. (templated)

    See ``DifyRunOperatorBase`` for the other parameters.
    """

    template_fields: Sequence[str] = ("dify_conn_id", *DifyRunOperatorBase.template_fields)
    batch_operator = "DifyBatchWorkflowOperator"

    def __init__(self, *, dify_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dify_conn_id = dify_conn_id

    @cached_property
    def hook(self) -> DifyHook:
        from docify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=self.dify_conn_id)

    def _wire(self, user: str) -> dict[str, Any]:
        return self.hook.prepare_inputs(self.inputs, user=user, validate=self.validate)

    def _follow(self, context: Context, state: TaskState, run_id: str, task_id: str | None, user: str) -> WorkflowRun:
        """Re-attach to a run an earlier try started (blocking: wait for it through the run detail)."""
        self._running = (task_id, run_id, user)
        return self.hook.wait_for_run(run_id)

    def _wait_without_form(self, context: Context, run_id: str, form: Mapping[str, Any]) -> Any:
        """No form could be found (a Dify that keeps no paused-run state): wait for Dify to resume the run."""
        from docify_provider import hitl_reattach
        from docify_provider.triggers.dify import DifyWorkflowRunTrigger

        running = self._running if self._running and self._running[1] == run_id else None
        hitl_reattach.warn_no_form(self, run_id, running[2] if running else resolve_user(self, self.hook))
        self.hook.close()
        self.defer(
            trigger=DifyWorkflowRunTrigger(
                workflow_run_id=run_id,
                dify_conn_id=self.dify_conn_id,
                poll_interval=self.pause_poll_interval,
                try_number=TaskState(context, self.log).try_number,
                form_title=form.get("title"),
                form_expires_at=form.get("expiration_time"),
            ),
            method_name="execute_complete",
        )

    def _form_backend(self, user: str) -> Any:
        """The :class:`~docify_provider.hitl.FormBackend` that reads and answers this operator's forms."""
        from docify_provider import hitl

        return hitl.DifyServiceForms(self.dify_conn_id, user)

    def _reattach(self, context: Context, state: TaskState, run_id: str, task_id: str | None, user: str) -> None:
        """Follow the resumed run from the triggerer (events endpoint; it may pause again)."""
        from docify_provider.triggers.dify import DifyWorkflowTrigger

        self.log.info("Deferring: the triggerer re-attaches to Dify run %s (%s)", run_id, RESUMED)
        self.hook.close()
        self.defer(
            trigger=DifyWorkflowTrigger(
                inputs=None,
                dify_conn_id=self.dify_conn_id,
                user=user,
                workflow_run_id=run_id,
                dify_task_id=task_id,
                reattach=RESUMED,
                **self._trigger_identity(context, state),
            ),
            method_name="execute_complete",
        )

    def _stop_task(self, task_id: str, run_id: str | None, user: str | None) -> WorkflowRun | None:
        """Ask Dify to stop the task, then read (a bounded number of times) what its run became."""
        return self.hook.stop_task(task_id, user=user, workflow_run_id=run_id)


class DifyRunWorkflowOperator(_DifyServiceRunOperator):
    """Run the Dify workflow bound to the connection's key and wait for its answer (blocking).

    Returns the XCom of :func:`docify_provider.xcom.dify_run_to_xcom`. See the base class for the
    parameters.
    """

    def _buy(self, context: Context, state: TaskState, wire: dict[str, Any], user: str) -> WorkflowRun:
        return self._send_until_started(context, state, lambda: self._send(state, wire, user))

    def _send(self, state: TaskState, wire: dict[str, Any], user: str) -> WorkflowRun:
        self.ledger(state).intend(task_id=None, workflow_run_id=None, user=user)
        self.log.info("Sending Dify run (blocking) for user %s", user)
        try:
            run = self.hook.run_workflow(
                wire, user=user, files=self.files, workflow_id=self.workflow_id or None, validate=False
            )
        except BaseException as exc:
            run_id = getattr(exc, "run_id", None)
            if not self._forget_if_settled(state, exc, run_id=run_id) and run_id:
                self._started(state, None, run_id, user)
            raise
        # Not written to the ledger here: ``_settle`` stores the run right after (its ids with its result,
        # or, paused, its ids), so one write, not two. A try killed between the two finds the run in the
        # app's logs (the pending record names its user and time) and re-attaches, never re-sends.
        self._running = (run.task_id, run.workflow_run_id, user)
        return run


class DifyStreamWorkflowOperator(_DifyServiceRunOperator):
    """Run the Dify workflow as a stream of events, each logged as it arrives.

    :param deferrable: hold the stream in the triggerer (``DifyWorkflowTrigger``); inputs are
        validated and uploaded on the worker first.

    See the base class for the other parameters.
    """

    def __init__(
        self,
        *,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def _buy(self, context: Context, state: TaskState, wire: dict[str, Any], user: str) -> WorkflowRun:
        if self.deferrable:
            self._defer(context, state, wire, user, None, None)
        return self._send_until_started(context, state, lambda: self._send(state, wire, user))

    def _send(self, state: TaskState, wire: dict[str, Any], user: str) -> WorkflowRun:
        self.ledger(state).intend(task_id=None, workflow_run_id=None, user=user)
        self.log.info("Sending Dify run (streaming) for user %s", user)
        events = self.hook.stream_workflow(
            wire, user=user, files=self.files, workflow_id=self.workflow_id or None, validate=False
        )
        return self._consume(state, events, user)

    def _follow(self, context: Context, state: TaskState, run_id: str, task_id: str | None, user: str) -> WorkflowRun:
        self._running = (task_id, run_id, user)
        if self.deferrable:
            self._defer(context, state, None, user, run_id, task_id)
        return self._consume(state, self.hook.attach(run_id, user=user, task_id=task_id), user)

    def _defer(
        self,
        context: Context,
        state: TaskState,
        wire: dict[str, Any] | None,
        user: str,
        run_id: str | None,
        task_id: str | None,
    ) -> None:
        from docify_provider.triggers.dify import DifyWorkflowTrigger
        from docify_provider.xcom import dify_marker

        ti = context_ti(context)
        trigger = DifyWorkflowTrigger(
            inputs=wire,
            dify_conn_id=self.dify_conn_id,
            user=user,
            files=self.files,
            workflow_id=self.workflow_id or None,
            allow_resubmit=self.allow_resubmit,
            workflow_run_id=run_id,
            dify_task_id=task_id,
            reattach=EARLIER_TRY if run_id else None,
            max_wait_not_started=self.max_wait_not_started,
            not_started_deadline=self._execution_deadline(context),
            **self._trigger_identity(context, state),
        )
        if run_id is None:
            self.ledger(state).intend(task_id=None, workflow_run_id=None, user=user)
            try:
                ti.xcom_push(key=DIFY_MARKER_XCOM_KEY, value=dify_marker("deferred", deferred_at=now_iso()))
            except Exception:
                self.log.warning("Could not write the Dify restart marker; the trigger will look for it", exc_info=True)
        if run_id:
            self.log.info("Deferring: the triggerer re-attaches to Dify run %s (%s)", run_id, EARLIER_TRY)
        else:
            self.log.info("Deferring the Dify stream to the triggerer (user %s)", user)
        self.hook.close()
        # Airflow 3 does not bound a deferral by execution_timeout: the trigger's own timeout does
        # (then _on_deferral_timeout stops the Dify task).
        self.defer(trigger=trigger, method_name="execute_complete", timeout=self._deferral_timeout(context))


def __getattr__(name: str) -> Any:
    """``run_from_record``, now in ``docify_provider.dify.models`` (issue 18), still importable from here
    as tests and DAGs do, and still not imported when a DAG file is parsed (the wire layer loads
    only when asked for)."""
    if name == "run_from_record":
        from docify_provider.dify import models

        return models.run_from_record
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_ASSET_ALIAS",
    "DifyRunWorkflowOperator",
    "DifyStreamWorkflowOperator",
    "DifyUploadFileOperator",
    "log_workflow_event",
    "paused_form",
]


# -- batch (issue 20): appended, the flow is operators/batch.py's --------------------------------------

from docify_provider.operators.batch import BatchOperatorBase  # noqa: E402 - kept below the single-run code


class DifyBatchWorkflowOperator(BatchOperatorBase):
    """Run the connection's Dify workflow once per item of ``inputs``, many at once (``BatchOperatorBase``).

    Every item is checked against ``GET /parameters`` (read once) before anything is uploaded or sent;
    each item's files are uploaded (as ``user``) just before it is sent. Items are streamed, each named
    by its ``workflow_run_id``; a cut stream is re-attached, and a retry re-attaches to an item's run
    instead of sending it again. A run that pauses for human input ends as ``paused`` (answer it in
    Dify, then clear the task: it re-attaches).

    :param dify_conn_id: Airflow connection of type ``dify``. (templated)
    :param files: the ``files`` (system files) of every run, as Dify file mappings. (templated)
    :param workflow_id: run this published workflow version instead of the app's current one. (templated)

    The other parameters are ``BatchOperatorBase``'s; ``outputs`` of an item are its run's outputs.
    """

    batch_backend = "dify"
    batch_key = "dify_batch"
    default_asset_alias = "dify_batches"
    template_fields: Sequence[str] = (*BatchOperatorBase.template_fields, "dify_conn_id", "files", "workflow_id")
    ui_color = "#e0e7ff"

    def __init__(
        self,
        *,
        dify_conn_id: str = DEFAULT_CONN_ID,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dify_conn_id = dify_conn_id
        self.files = files
        self.workflow_id = workflow_id

    @cached_property
    def hook(self) -> DifyHook:
        from docify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=self.dify_conn_id)

    def _conn_id(self) -> str:
        return str(self.dify_conn_id)

    def _options(self) -> dict[str, Any]:
        return {"files": self.files, "workflow_id": self.workflow_id}


__all__ += ["DifyBatchWorkflowOperator"]
