"""Operators that run Docify scenarios and upload files.

* ``DocifyRunScenarioOperator``: one blocking ``POST /v1/scenario/run``.
* ``DocifyStreamScenarioOperator``: ``POST /v1/scenario/run/streaming``; every event reaches the
  task log as it arrives. With ``deferrable=True`` the stream is held by the triggerer
  (``DocifyStreamTrigger``), so no worker slot waits on Docify.
* ``DocifyUploadFileOperator``: ``POST /v1/file/upload``; its XCom feeds a run's FILE inputs.

Both run operators return the same XCom dict (see :mod:`docify_provider.xcom`), validate inputs
before any upload or run, and buy a result once: the run response is kept in the task's
``task_state_store`` (Airflow 3.3+; an Airflow Variable before, see :mod:`.state`) before
attachments are downloaded, so a retry redoes only the post-processing. A run whose outcome is
unknown (the request may have reached Docify, but no answer arrived) is never re-sent by a retry
unless ``allow_resubmit=True``.

Asset events (``emit_asset_events=True``): attachment URIs are only known at run time, so events
go through an ``AssetAlias`` (default name ``docify_attachments``) that the operator adds to its
``outlets``: ``context["outlet_events"][AssetAlias(name)].add(Asset(uri), extra=...)`` creates the
asset (URI = stored path, ``file://`` for local files) and its event with extra ``{"run_id",
"cost_points", "scenario_id"}``. Downstream DAGs schedule on ``AssetAlias(name)``.

The run operators push the XCom dict once (``return_value``): every XCom is one Execution API
call, so per-key XComs would cost a run 12 calls. ``multiple_outputs=True`` (a ``BaseOperator``
argument) pushes every key as its own XCom as well, for ``task.output["json_result"]``.

This module is imported when DAG files are parsed: it imports only ``airflow.sdk`` pieces at
module level; the hook, the HTTP client and the trigger are imported when a task runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, conf

from docify_provider.durable.ledger import now_iso
from docify_provider.durable.policy import DOCIFY, Action
from docify_provider.durable.state import TaskState
from docify_provider.hooks.base import resolve_user
from docify_provider.operators.base import (
    RunOperatorBase,
    context_ti,
    map_index,
    outcome_known,
)
from docify_provider.operators.fail_fast import fails_fast
from docify_provider.xcom import (
    LEGACY_PENDING_STATE_KEY,
    LEGACY_RESULT_STATE_KEY,
    STATE_KEY,
    STREAM_MARKER_XCOM_KEY,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from docify_provider._core.errors import ProviderError
    from docify_provider.docify.models import RunResult
    from docify_provider.hooks.docify import DocifyHook

DEFAULT_CONN_ID = "docify_default"
#: Default name of the ``AssetAlias`` the run operators emit attachment asset events through.
DEFAULT_ASSET_ALIAS = "docify_attachments"


# -- operators ------------------------------------------------------------------------------------


class DocifyUploadFileOperator(BaseOperator):
    """Upload one file to Docify (``POST /v1/file/upload``) and return ``UploadedFile.as_dict()``.

    The returned dict (``upload_file_oid``, ``file_name``, ``file_size``, ``file_type``) can be passed
    as a FILE / FILELIST input of a run operator (``inputs={"invoice_image": upload.output}``).

    :param source: local path, ``ObjectStoragePath`` or storage URL (``s3://``, ``gs://``, ``file://``);
        streamed, never read into memory. (templated)
    :param file_type: ``IMAGE`` or ``DOCUMENT``; inferred from the name when not given. (templated)
    :param file_name: name sent to Docify; the source's name by default. (templated)
    :param user: Docify user identifier; ``airflow:<dag_id>.<task_id>`` by default. (templated)
    :param docify_conn_id: Airflow connection of type ``docify``. (templated)
    """

    template_fields: Sequence[str] = ("docify_conn_id", "source", "file_type", "file_name", "user")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        source: Any,
        file_type: str | None = None,
        file_name: str | None = None,
        user: str | None = None,
        docify_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.file_type = file_type
        self.file_name = file_name
        self.user = user
        self.docify_conn_id = docify_conn_id

    @cached_property
    def hook(self) -> DocifyHook:
        from docify_provider.hooks.docify import DocifyHook

        return DocifyHook(docify_conn_id=self.docify_conn_id)

    @fails_fast
    def execute(self, context: Context) -> dict[str, Any]:
        user = resolve_user(self, self.hook)
        try:
            uploaded = self.hook.upload_file(
                self.source, user=user, file_type=self.file_type or None, file_name=self.file_name or None
            )
        finally:
            self.hook.close()
        from docify_provider._core.wording import clauses, counted

        facts = clauses(counted(uploaded.file_size, "byte"), uploaded.file_type)
        shown = f" ({facts})" if facts else ""
        self.log.info("Uploaded %s%s as %s", uploaded.file_name, shown, uploaded.upload_file_oid)
        return uploaded.as_dict()


class _DocifyRunOperatorBase(RunOperatorBase):
    """Shared parameters and post-processing of the run operators (not for direct use).

    :param inputs: mapping of scenario variable -> value: plain text; a local path,
        ``ObjectStoragePath`` or storage URL for FILE / FILELIST parameters (uploaded after
        validation); an http(s) URL or ``{"url": ...}``; an ``{"uploadFileOid": ...}`` dict or the
        upload operator's XCom; a list of these for FILELIST. (templated)
    :param user: Docify user identifier; default the connection's ``default_user`` extra, else
        ``airflow:<dag_id>.<task_id>``. (templated)
    :param additional_info: JSON-serialisable ``additionalInfo`` sent with the run. (templated)
    :param attachments_to: where to store the run's attachments: a local folder, an
        ``ObjectStoragePath`` or a storage URL. Files go to
        ``<attachments_to>/<dag_id>/<run_id>/<task_id>[-<map_index>]/<safe name>``. (templated)
    :param emit_asset_events: for every stored attachment, emit an asset event through the
        ``AssetAlias`` named ``asset_alias`` (added to the task's outlets): asset URI = the stored
        path (``file://`` for local files), event extra ``{"run_id", "cost_points", "scenario_id"}``.
    :param asset_alias: name of that alias (default ``docify_attachments``); schedule DAGs on
        ``AssetAlias(name)`` to consume the attachments.
    :param validate: check inputs against ``GET /v1/scenario/info`` before uploading or paying.
    :param force_rerun: buy a new run even when an earlier try of this task already bought one (or
        may have: implies ``allow_resubmit``).
    :param allow_resubmit: send the run even when an earlier try (or triggerer) may already have
        started one whose result never arrived (risk of paying twice).
    :param max_wait_not_started: seconds (default 600) to keep sending the run again while Docify
        turns it away with HTTP 429 before starting it (``Retry-After``, else backoff), within
        ``execution_timeout``; 0 fails at the first 429.
    :param docify_conn_id: Airflow connection of type ``docify``. (templated)
    """

    state_key = STATE_KEY
    legacy_state_keys = (("result", LEGACY_RESULT_STATE_KEY), ("pending", LEGACY_PENDING_STATE_KEY))
    label = "Docify"
    marker_xcom_key = STREAM_MARKER_XCOM_KEY
    policy_backend = DOCIFY
    default_asset_alias = DEFAULT_ASSET_ALIAS
    batch_operator = "DocifyBatchScenarioOperator"

    template_fields: Sequence[str] = ("docify_conn_id", "inputs", "user", "additional_info", "attachments_to")
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json", "additional_info": "json"}
    ui_color = "#dbeafe"

    def __init__(
        self,
        *,
        docify_conn_id: str = DEFAULT_CONN_ID,
        additional_info: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.docify_conn_id = docify_conn_id
        self.additional_info = additional_info

    @cached_property
    def hook(self) -> DocifyHook:
        from docify_provider.hooks.docify import DocifyHook

        return DocifyHook(docify_conn_id=self.docify_conn_id)

    def _error_root(self) -> type[ProviderError]:
        from docify_provider.docify.errors import DocifyError

        return DocifyError

    # -- the shared flow ------------------------------------------------------------------------

    @fails_fast
    def execute(self, context: Context) -> Any:
        self._check_output_targets()
        state = TaskState(context, self.log)
        self._ledger = None
        try:
            decision = self._decide(state)  # Docify cannot re-attach: reuse, send, or outcome unknown (raised)
            if decision.action is Action.REUSE and decision.result is not None:
                from docify_provider.docify.models import RunResult

                result = RunResult.from_api(decision.result["raw"])
                return self._finish(context, state, result, decision.result.get("session_id"))
            user = resolve_user(self, self.hook)
            wire = self.hook.prepare_inputs(self.inputs, user=user, validate=self.validate)
            bought = self._buy(context, state, wire, user)
            if bought is None:  # pragma: no cover - _buy defers or returns
                return None
            result, session_id = bought
            return self._finish(context, state, result, session_id)
        finally:
            self.hook.close()

    def _buy(
        self, context: Context, state: TaskState, wire: dict[str, Any], user: str
    ) -> tuple[RunResult, str | None] | None:
        raise NotImplementedError

    def _mark_pending(self, state: TaskState) -> None:
        self.ledger(state).intend(session_id=None)

    def _note_session(self, state: TaskState, session_id: str) -> None:
        """Record the session id of a run in flight, for the error a retry raises if its outcome stays unknown."""
        self.ledger(state).started(session_id=session_id)

    def _save_result(self, state: TaskState, result: RunResult, session_id: str | None) -> None:
        """Keep the bought result where a retry finds it, before anything else can fail."""
        self.ledger(state).bought(result.raw, session_id=session_id)

    # -- post-processing ------------------------------------------------------------------------

    def _finish(self, context: Context, state: TaskState, result: RunResult, session_id: str | None) -> dict[str, Any]:
        from docify_provider.xcom import result_to_xcom

        self._log_result(result, session_id)
        paths = self._store_attachments(context, result)
        if self.emit_asset_events and paths:
            self._emit_asset_events(context, result, paths)
        xcom = result_to_xcom(result, paths, session_id=session_id)
        self.ledger(state).succeeded()
        if self.multiple_outputs:
            self._push_keys_airflow_3_0_refuses(context, xcom)
        return xcom

    def _log_result(self, result: RunResult, session_id: str | None) -> None:
        from docify_provider._core.wording import counted
        from docify_provider.docify.narration import result_summary

        session = f", session {session_id}" if session_id else ""
        self.log.info("Docify %s%s; %s", result_summary(result), session, counted(len(result.files), "attachment"))

    def _store_attachments(self, context: Context, result: RunResult) -> list[str] | None:
        return self._store_files(context, result.files)

    def _emit_asset_events(self, context: Context, result: RunResult, paths: Sequence[str]) -> None:
        extra = {"run_id": result.run_id, "cost_points": result.cost_points, "scenario_id": result.scenario_id}
        self._emit_file_events(context, paths, extra)


class DocifyRunScenarioOperator(_DocifyRunOperatorBase):
    """Run the Docify scenario bound to the connection's key and wait for its answer (blocking).

    ``POST /v1/scenario/run`` is sent once and never re-sent automatically. Returns the XCom
    documented in :mod:`docify_provider.xcom` (``session_id`` is None). See the base class for the
    parameters.
    """

    def _buy(self, context: Context, state: TaskState, wire: dict[str, Any], user: str) -> tuple[RunResult, str | None]:
        return self._send_until_started(context, state, lambda: self._send(state, wire, user))

    def _send(self, state: TaskState, wire: dict[str, Any], user: str) -> tuple[RunResult, str | None]:
        self._mark_pending(state)
        self.log.info("Sending Docify run (blocking) for user %s", user)
        try:
            result = self.hook.run_scenario(wire, user=user, additional_info=self.additional_info, validate=False)
        except BaseException as exc:
            self._settle_failure(state, exc)
            raise
        self._save_result(state, result, None)
        return result, None


class DocifyStreamScenarioOperator(_DocifyRunOperatorBase):
    """Run the Docify scenario as a stream of events, each logged as it arrives.

    Logs the session id at START, the PREPARE phases, every TEXT chunk, and cost points and
    elapsed time at COMPLETE. Returns the XCom documented in :mod:`docify_provider.xcom`.

    :param deferrable: hold the stream in the triggerer (``DocifyStreamTrigger``) instead of a worker
        slot. Inputs are validated and uploaded on the worker first; the trigger receives only the
        wire inputs and resolves the connection (and its key) itself.
    :param idle_timeout: seconds the stream may go without an event (pings do not count); default
        the connection's ``idle_timeout`` extra.

    See the base class for the other parameters.
    """

    def __init__(
        self,
        *,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        idle_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.idle_timeout = idle_timeout

    def _configure(self) -> None:
        if self.idle_timeout:
            import dataclasses

            self.hook.config = dataclasses.replace(self.hook.config, idle_timeout=float(self.idle_timeout))
            self.hook.close()  # the next client is built from the new config

    def _buy(
        self, context: Context, state: TaskState, wire: dict[str, Any], user: str
    ) -> tuple[RunResult, str | None] | None:
        if self.deferrable:
            self._defer(context, state, wire, user)
        self._configure()
        return self._send_until_started(context, state, lambda: self._send(state, wire, user))

    def _send(self, state: TaskState, wire: dict[str, Any], user: str) -> tuple[RunResult, str | None]:
        from docify_provider.docify.narration import log_stream_event

        self._mark_pending(state)
        self.log.info("Sending Docify run (streaming) for user %s", user)
        result: RunResult | None = None
        session_id: str | None = None
        try:
            events = self.hook.stream_scenario(wire, user=user, additional_info=self.additional_info, validate=False)
            with contextlib.closing(events):  # type: ignore[type-var]
                for event in events:
                    log_stream_event(self.log, event)
                    if session_id is None and event.session_id:
                        session_id = event.session_id
                        self._note_session(state, session_id)
                    if event.type == "COMPLETE" and event.response is not None:
                        result = event.response
        except BaseException as exc:
            self._settle_failure(state, exc)
            raise
        if result is None:  # pragma: no cover - the client raises before this
            from docify_provider.docify.errors import DocifyStreamIncompleteError

            raise DocifyStreamIncompleteError("The Docify stream ended without a result", session_id=session_id)
        self._save_result(state, result, session_id)
        return result, session_id

    def _defer(self, context: Context, state: TaskState, wire: dict[str, Any], user: str) -> None:
        from docify_provider.triggers.docify import DocifyStreamTrigger

        ti = context_ti(context)
        trigger = DocifyStreamTrigger(
            inputs=wire,
            docify_conn_id=self.docify_conn_id,
            user=user,
            additional_info=self.additional_info,
            allow_resubmit=self.allow_resubmit,
            idle_timeout=self.idle_timeout,
            dag_id=getattr(ti, "dag_id", None) or self.dag_id,
            task_id=getattr(ti, "task_id", None) or self.task_id,
            run_id=getattr(ti, "run_id", None),
            map_index=map_index(context),
            try_number=state.try_number,
            max_wait_not_started=self.max_wait_not_started,
            not_started_deadline=self._execution_deadline(context),
        )
        self._mark_pending(state)
        # The trigger's restart guard: "deferred" means no trigger has sent the run yet. Writing it
        # here also spares the trigger a lookup of a missing XCom.
        from docify_provider.xcom import stream_marker

        try:
            ti.xcom_push(key=STREAM_MARKER_XCOM_KEY, value=stream_marker("deferred", deferred_at=now_iso()))
        except Exception:
            self.log.warning("Could not write the stream restart marker; the trigger will look for it", exc_info=True)
        self.log.info("Deferring the Docify stream to the triggerer (user %s)", user)
        self.hook.close()
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after ``DocifyStreamTrigger``: keep the result, post-process, or raise its error."""
        from docify_provider.docify.models import RunResult
        from docify_provider.events import error_from_event

        state = TaskState(context, self.log)
        if self._resumed_with_earlier_event(context, state, event):
            # Started from the top: a bought result is reused, an unknown outcome fails closed on
            # its pending marker, and a run that failed on Docify is run again.
            self.hook.close()
            return self.execute(context)
        self._ledger = None
        try:
            if not event:
                from docify_provider.docify.errors import DocifyOutcomeUnknownError

                raise DocifyOutcomeUnknownError("The Docify stream trigger ended without an event; outcome unknown")
            status = event.get("status")
            if status == "trigger_failed":
                return self._after_trigger_failure(context, str(event.get("message")), event)
            if status == "success":
                result = RunResult.from_api(event["result"])
                session_id = event.get("session_id")
                self._save_result(state, result, session_id)
                return self._finish(context, state, result, session_id)
            exc = error_from_event(event)
            self.hook.forget_description_if_refused(exc)  # refused inputs: the next task reads them again
            self._settle_failure(state, exc)
            if not outcome_known(exc) and event.get("session_id"):
                self._note_session(state, str(event["session_id"]))
            raise exc
        finally:
            self.hook.close()

    def on_kill(self) -> None:
        # Closing the client cuts a stream in flight; the run may still finish (and bill) on Docify.
        if "hook" in self.__dict__:
            self.hook.close()


def __getattr__(name: str) -> Any:
    """``log_stream_event``, now in ``docify_provider.docify.narration`` (issue 18), still importable from
    here as benchmarks and DAGs do, and still not imported when a DAG file is parsed (the wire layer
    loads only when asked for)."""
    if name == "log_stream_event":
        from docify_provider.docify import narration

        return narration.log_stream_event
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_ASSET_ALIAS",
    "DocifyRunScenarioOperator",
    "DocifyStreamScenarioOperator",
    "DocifyUploadFileOperator",
]


# -- batch (issue 20): appended, the flow is operators/batch.py's --------------------------------------

from docify_provider.operators.batch import BatchOperatorBase  # noqa: E402 - kept below the single-run code


class DocifyBatchScenarioOperator(BatchOperatorBase):
    """Run the connection's Docify scenario once per item of ``inputs``, many at once (``BatchOperatorBase``).

    Every item is checked against ``GET /v1/scenario/info`` (read once) before anything is uploaded or
    sent; each item's files are uploaded just before it is sent. Items are streamed
    (``/v1/scenario/run/streaming``), each named by its ``session_id``. Docify has no status endpoint:
    an item whose stream was cut after it started is "unknown" and never re-sent by a retry.

    :param docify_conn_id: Airflow connection of type ``docify``. (templated)
    :param additional_info: JSON-serialisable ``additionalInfo`` sent with every run. (templated)

    The other parameters are ``BatchOperatorBase``'s; ``outputs`` of an item are its JSON result
    (else its text).
    """

    batch_backend = "docify"
    batch_key = "docify_batch"
    default_asset_alias = "docify_batches"
    template_fields: Sequence[str] = (*BatchOperatorBase.template_fields, "docify_conn_id", "additional_info")
    ui_color = "#dbeafe"

    def __init__(self, *, docify_conn_id: str = DEFAULT_CONN_ID, additional_info: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.docify_conn_id = docify_conn_id
        self.additional_info = additional_info

    @cached_property
    def hook(self) -> DocifyHook:
        from docify_provider.hooks.docify import DocifyHook

        return DocifyHook(docify_conn_id=self.docify_conn_id)

    def _conn_id(self) -> str:
        return str(self.docify_conn_id)

    def _options(self) -> dict[str, Any]:
        return {"additional_info": self.additional_info}


__all__ += ["DocifyBatchScenarioOperator"]
