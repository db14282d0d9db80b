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
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, conf

from docify_provider.dify.narration import log_form, log_run, log_workflow_event
from docify_provider.durable.ledger import now_iso
from docify_provider.durable.policy import DIFY, Action
from docify_provider.durable.state import TaskState
from docify_provider.hooks.base import resolve_user
from docify_provider.operators.base import (
    RunOperatorBase,
    context_ti,
    map_index,
    outcome_known,
    with_asset_alias,
)
from docify_provider.xcom import DIFY_MARKER_XCOM_KEY, DIFY_STATE_KEY

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from docify_provider._core.errors import ProviderError
    from docify_provider.dify.models import WorkflowRun
    from docify_provider.hooks.dify import DifyHook

DEFAULT_CONN_ID = "dify_default"
#: Default name of the ``AssetAlias`` the run operators emit output-file asset events through.
DEFAULT_ASSET_ALIAS = "dify_outputs"


def paused_form(run: WorkflowRun) -> dict[str, Any]:
    """The human-input form a paused run's answer names (``reasons``), as ``FormRequest.as_dict()``."""
    from docify_provider.dify.models import form_of_pause

    raw: Mapping[str, Any] = run.raw if isinstance(run.raw, Mapping) else {}
    inner = raw.get("data")
    return form_of_pause(inner if isinstance(inner, Mapping) else raw)


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

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            uploaded = self.hook.upload_file(
                self.source, user=resolve_user(self, self.hook), file_name=self.file_name or None
            )
        finally:
            self.hook.close()
        self.log.info("Uploaded %s (%s bytes) to Dify as %s", uploaded.name, uploaded.size, uploaded.id)
        return uploaded.as_dict()


class _DifyRunOperatorBase(RunOperatorBase):
    """Shared parameters and flow of the Dify run operators (not for direct use).

    :param inputs: variable -> value, validated against ``/parameters`` before any upload or run;
        file variables take paths, storage URLs, ``ObjectStoragePath``, http(s) URLs, uploads. (templated)
    :param user: Dify end-user id; default the connection's ``default_user`` extra, else
        ``airflow:<dag_id>.<task_id>``. (templated)
    :param files: the run's ``files`` (system files), as Dify file mappings. (templated)
    :param workflow_id: run this published workflow version instead of the app's current one. (templated)
    :param attachments_to: where to store output files (local folder, ``ObjectStoragePath``, storage
        URL): ``<attachments_to>/<dag_id>/<run_id>/<task_id>[-<map_index>]/<name>``. (templated)
    :param emit_asset_events: one asset event per stored file through ``AssetAlias(asset_alias)``.
    :param on_pause: ``"wait"`` (default: wait, deferred, until the human-input form is answered)
        or ``"fail"`` (raise ``DifyPausedError`` naming the form).
    :param pause_poll_interval: seconds between run-detail reads while paused.
    :param force_rerun: start a new run even when an earlier try already started or bought one.
    :param allow_resubmit: send the run even when an earlier try may have started one whose run id
        never arrived (risk of paying twice).
    :param dify_conn_id: Airflow connection of type ``dify``. (templated)
    """

    state_key = DIFY_STATE_KEY
    label = "Dify"
    marker_xcom_key = DIFY_MARKER_XCOM_KEY
    policy_backend = DIFY
    deferrable = False

    template_fields: Sequence[str] = ("dify_conn_id", "inputs", "user", "files", "workflow_id", "attachments_to")
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json", "files": "json"}
    ui_color = "#e0e7ff"

    def __init__(
        self,
        *,
        inputs: Mapping[str, Any] | None = None,
        dify_conn_id: str = DEFAULT_CONN_ID,
        user: str | None = None,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
        attachments_to: Any = None,
        emit_asset_events: bool = False,
        asset_alias: str = DEFAULT_ASSET_ALIAS,
        validate: bool = True,
        on_pause: str = "wait",
        pause_poll_interval: float = 30.0,
        force_rerun: bool = False,
        allow_resubmit: bool = False,
        **kwargs: Any,
    ) -> None:
        if on_pause not in ("wait", "fail"):
            raise ValueError(f"on_pause must be 'wait' or 'fail', got {on_pause!r}")
        super().__init__(**with_asset_alias(kwargs, emit_asset_events, asset_alias))
        self.inputs = inputs
        self.dify_conn_id = dify_conn_id
        self.user = user
        self.files = files
        self.workflow_id = workflow_id
        self.attachments_to = attachments_to
        self.emit_asset_events = emit_asset_events
        self.asset_alias = asset_alias
        self.validate = validate
        self.on_pause = on_pause
        self.pause_poll_interval = pause_poll_interval
        self.force_rerun = force_rerun
        self.allow_resubmit = allow_resubmit
        self._ledger = None
        #: (task_id, workflow_run_id, user) of the run in flight, for on_kill / execution_timeout.
        self._running: tuple[str | None, str | None, str] | None = None
        #: Set once a stop was attempted (or found impossible) for this try.
        self._stop_handled = False

    @cached_property
    def hook(self) -> DifyHook:
        from docify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=self.dify_conn_id)

    # -- the shared flow ------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        self._check_output_targets()
        state = TaskState(context, self.log)
        self._ledger = None
        self._stop_handled = False
        user = resolve_user(self, self.hook)
        try:
            run = self._recover(context, state, user)
            if run is None:
                wire = self.hook.prepare_inputs(self.inputs, user=user, validate=self.validate)
                run = self._buy(context, state, wire, user)
            return self._settle(context, state, run, user)
        except BaseException as exc:
            if _is_task_timeout(exc):
                self._stop_running("execution_timeout")
            raise
        finally:
            self.hook.close()

    def _buy(self, context: Context, state: TaskState, wire: dict[str, Any], user: str) -> WorkflowRun:
        raise NotImplementedError

    def _follow(self, context: Context, state: TaskState, run_id: str, task_id: str | None, user: str) -> WorkflowRun:
        """Re-attach to a run an earlier try started (blocking: wait for it)."""
        self._running = (task_id, run_id, user)
        return self.hook.wait_for_run(run_id)

    def _error_root(self) -> type[ProviderError]:
        """The error family of this operator's own failures (``DifyError``; the account API's operator
        ``DifyOpenAPIError``), so that ``except DifyOpenAPIError`` catches its refusals too."""
        from docify_provider.dify.errors import DifyError

        return DifyError

    def _recover(self, context: Context, state: TaskState, user: str) -> WorkflowRun | None:
        """What an earlier try left (the run policy): a result to reuse, or a run to re-attach to; None: send.

        An unknown outcome raises (``_decide``) before anything is uploaded or sent.
        """
        from docify_provider.dify.models import run_from_record

        decision = self._decide(state)
        if decision.action is Action.REUSE and decision.result is not None:
            return run_from_record(decision.result["raw"], self.hook.config.base_url)
        if decision.action is Action.REATTACH and decision.run_id:
            return self._follow(context, state, decision.run_id, decision.task_id, decision.user or user)
        return None

    def _forget_if_settled(self, state: TaskState, exc: BaseException, run_id: str | None = None) -> bool:
        """After a failure: forget the pending record only when ``exc`` proves no run is pending.

        Once a run id is known only the run's own end (``DifyRunFailedError``) settles it: an error
        of a lookup (run detail, events, logs) while re-attaching leaves the run going on. Without
        one, an HTTP error settles only when it answered the run request itself. Returns whether
        the record was forgotten.
        """
        if _failure_settles(exc, run_known=bool(run_id or (self._running and self._running[1]))):
            self.ledger(state).forget()
            return True
        return False

    def _started(self, state: TaskState, task_id: str | None, run_id: str | None, user: str) -> None:
        if run_id:
            self._running = (task_id, run_id, user)
            self.ledger(state).started(task_id=task_id, workflow_run_id=run_id)

    def _settle(self, context: Context, state: TaskState, run: WorkflowRun, user: str) -> Any:
        """A paused run: fail or wait (deferred); an ended one: keep it and post-process."""
        from docify_provider.dify.models import run_record

        if run.paused:
            self._started(state, run.task_id, run.workflow_run_id, user)
            return self._on_paused(context, run.workflow_run_id, paused_form(run))
        self.ledger(state).bought(run_record(run), task_id=run.task_id, workflow_run_id=run.workflow_run_id)
        self._running = None
        return self._finish(context, state, run)

    def _on_paused(self, context: Context, run_id: str, form: Mapping[str, Any]) -> Any:
        """Fail (``on_pause="fail"``) or wait on the form; a pause that names no form (a re-attach
        through the run detail) is looked up in Dify's paused-run state first (``hitl_reattach``)."""
        from docify_provider import hitl_reattach
        from docify_provider.dify.errors import DifyPausedError

        if self.on_pause == "wait":
            running = self._running if self._running and self._running[1] == run_id else None
            form = hitl_reattach.look_up(self, run_id, form, running[2] if running else resolve_user(self, self.hook))
        log_form(self.log, form, run_id)
        if self.on_pause == "fail":
            title = form.get("title") or "a human-input form"
            raise DifyPausedError(
                f"Dify run {run_id} paused for human input ({title!r}); on_pause='fail'. Answer the form, "
                "then clear the task (it re-attaches to the run).",
                run_id=run_id,
                form=hitl_reattach.public_form(form),
            )
        if form.get("form_token"):
            return self._wait_for_human(context, run_id, form)
        return self._wait_without_form(context, run_id, form)

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

    # -- human input (docify_provider.hitl) ----------------------------------------------------

    def _wait_for_human(self, context: Context, run_id: str, form: Mapping[str, Any]) -> Any:
        """Raise the try's Airflow HITL request for ``form`` (3.1+) and wait, deferred, for an answer."""
        from docify_provider import hitl, hitl_reattach
        from docify_provider.compat import airflow_version, mask_secret_once
        from docify_provider.triggers.hitl import HumanInputTrigger

        state = TaskState(context, self.log)
        running = self._running if self._running and self._running[1] == run_id else None
        user = running[2] if running else resolve_user(self, self.hook)
        info = hitl_reattach.form_info(self, run_id, running[0] if running else None, user, form)
        # The form token lets its holder answer the form: Airflow's masker redacts it from every log
        # line from here on (Airflow 3.0 prints a deferral's kwargs).
        mask_secret_once(info["form_token"])
        hitl_reattach.check_found(self, state, run_id, form)  # the form an earlier try asked for; expired
        ti_id = None
        if hitl.has_hitl():
            ti_id = self._hitl_record(context, state, info)
        else:
            major, minor = airflow_version()
            self.log.warning(
                "Airflow %s.%s has no human-in-the-loop requests (3.1+): answer the form %r of Dify run %s in Dify "
                "(expires %s); the task waits, deferred, and goes on when Dify resumes the run",
                major,
                minor,
                info["title"],
                run_id,
                info["expires_at"] or "never",
            )
        self.log.info("Waiting (deferred) for Dify run %s to be resumed and finish", run_id)
        self.hook.close()
        self.defer(
            trigger=HumanInputTrigger(
                hitl=info, ti_id=ti_id, poll_interval=self.pause_poll_interval, try_number=state.try_number
            ),
            method_name="execute_complete",
            kwargs={"hitl": info},
        )

    def _form_backend(self, user: str) -> Any:
        """The :class:`~docify_provider.hitl.FormBackend` that reads and answers this operator's forms."""
        from docify_provider import hitl

        return hitl.DifyServiceForms(self.dify_conn_id, user)

    def _hitl_record(self, context: Context, state: TaskState, info: dict[str, Any]) -> str | None:
        """The TI id whose HITL record asks for this form, or None (the form is answered in Dify).

        One record per task (see :mod:`docify_provider.hitl`): the first form of the run gets it;
        the same form again re-uses it untouched; a later form is answered in Dify (logged).
        """
        from docify_provider import hitl

        ti = context["task_instance"]
        key, title, run_id = hitl.form_key(info["form_token"]), info["title"], info["workflow_run_id"]
        held = state.get(hitl.HITL_STATE_KEY, must=False) or {}
        if held.get("form") == key:
            info["actions"] = dict(held.get("actions") or {})
            self.log.info("This task already asked Airflow for form %r; waiting for its answer", title)
            return str(ti.id)
        if held:
            self._answer_in_dify(info, f"this task's request already asked for the form {held.get('title')!r}")
            return None
        backend = hitl.backend_from_spec(info["backend"], info["backend_kwargs"])
        try:
            definition = backend.get_form(info["form_token"])
        except Exception as exc:
            self.log.warning("Could not read the form %r of Dify run %s (%s); waiting for Dify", title, run_id, exc)
            return None
        request = hitl.request_from_form(title, definition, info["expires_at"])
        if not hitl.raise_request(context, request):
            self._answer_in_dify(info, "this task's request already holds another form")
            return None
        info["actions"] = request.actions
        state.set(
            hitl.HITL_STATE_KEY,
            {"try": state.try_number, "form": key, "title": title, "run": run_id, "actions": request.actions},
        )
        self.log.info(
            "Asked Airflow for human input (Required Actions): %r, options %s, params %s",
            request.subject,
            request.options,
            sorted(request.params),
        )
        return str(ti.id)

    def _answer_in_dify(self, info: Mapping[str, Any], why: str) -> None:
        """Say, once per form, that it must be answered in Dify, why, and where."""
        where = self._answer_where(info)
        self.log.warning(
            "Dify run %s paused on the form %r, which is NOT asked in Airflow: Airflow keeps one human-in-the-loop "
            "request per task (its tries share it), and %s. Answer it in Dify's console at %s (expires %s); "
            "the task waits, deferred, and goes on when Dify resumes the run",
            info["workflow_run_id"],
            info["title"],
            why,
            where,
            info.get("expires_at") or "never",
        )

    def _answer_where(self, info: Mapping[str, Any]) -> str:
        """Where the form is answered in Dify (the backend's ``answer_where``; a read of config only)."""
        from docify_provider import hitl

        try:
            backend = hitl.backend_from_spec(info["backend"], info["backend_kwargs"])
            return str(backend.answer_where(str(info["workflow_run_id"])))  # type: ignore[attr-defined]
        except Exception:
            return "the Dify console"

    def _after_human(
        self,
        context: Context,
        state: TaskState,
        info: Mapping[str, Any],
        answer: tuple[list[str], dict[str, Any], Any] | None,
    ) -> Any:
        """Post an Airflow answer to Dify (unless Dify already has one), then re-attach to the run."""
        from docify_provider import hitl
        from docify_provider.dify.errors import DifyInputError

        run_id, user = str(info["workflow_run_id"]), str(info["user"])
        self._started(state, info.get("dify_task_id"), run_id, user)
        if answer is not None:
            chosen, params, who = answer
            actions = dict(info.get("actions") or {})
            action = actions.get(chosen[0]) if chosen else None
            if action is None:
                raise DifyInputError(f"The Airflow answer {chosen} names none of the form's actions {list(actions)}")
            backend = hitl.backend_from_spec(str(info["backend"]), info.get("backend_kwargs") or {})
            inputs = {k: v for k, v in params.items() if v is not None}
            name = who.get("name") if isinstance(who, Mapping) else who
            if backend.submit_form(str(info["form_token"]), action, inputs):
                self.log.info(
                    "Posted the Airflow answer to Dify run %s: action %r (%s), inputs %s, answered by %s",
                    run_id,
                    action,
                    chosen[0],
                    sorted(inputs),
                    name or "?",
                )
            else:
                self.log.warning(
                    "The form %r of Dify run %s was answered in Dify first; the Airflow answer (%s by %s) "
                    "was not posted",
                    info.get("title"),
                    run_id,
                    chosen[0],
                    name or "?",
                )
        return self._reattach(context, state, run_id, info.get("dify_task_id"), user)

    def _trigger_identity(self, context: Context, state: TaskState) -> dict[str, Any]:
        """The task instance a Dify trigger belongs to (its restart marker's key), for every deferral."""
        ti = context_ti(context)
        return {
            "dag_id": getattr(ti, "dag_id", None) or self.dag_id,
            "task_id": getattr(ti, "task_id", None) or self.task_id,
            "run_id": getattr(ti, "run_id", None),
            "map_index": map_index(context),
            "try_number": state.try_number,
        }

    def _reattach(self, context: Context, state: TaskState, run_id: str, task_id: str | None, user: str) -> None:
        """Follow the resumed run from the triggerer (events endpoint; it may pause again)."""
        from docify_provider.triggers.dify import DifyWorkflowTrigger

        self.log.info("Re-attaching (deferred) to the resumed Dify run %s", run_id)
        self.hook.close()
        self.defer(
            trigger=DifyWorkflowTrigger(
                inputs=None,
                dify_conn_id=self.dify_conn_id,
                user=user,
                workflow_run_id=run_id,
                dify_task_id=task_id,
                **self._trigger_identity(context, state),
            ),
            method_name="execute_complete",
        )

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, hitl: dict[str, Any] | None = None
    ) -> Any:
        """Resume after a Dify trigger: keep the run, post-process, wait on a pause, or raise its error.

        ``hitl`` (the defer kwargs of a human-input wait) names the form when Airflow 3.3 resumes the
        task straight from a REST API answer, whose event carries only the answer.
        """
        from docify_provider import hitl as seam
        from docify_provider._core.errors import OutcomeUnknownError, error_class
        from docify_provider.dify.models import run_from_record
        from docify_provider.events import error_from_event

        state = TaskState(context, self.log)
        if self._resumed_with_earlier_event(context, state, event):
            self.hook.close()
            return self.execute(context)
        self._ledger = None
        user = resolve_user(self, self.hook)
        try:
            if not event:
                unknown = error_class(self._error_root(), OutcomeUnknownError)
                raise unknown("The Dify trigger ended without an event; outcome unknown")
            if event.get("status") == "trigger_failed":
                return self._after_trigger_failure(context, str(event.get("message")), event)
            run_id, task_id = event.get("workflow_run_id"), event.get("task_id")
            status = event.get("status")
            answer = seam.answer_of(event)
            info = event.get("hitl") or hitl
            if (answer is not None or status == "hitl_resumed") and info:
                return self._after_human(context, state, info, answer)
            if answer is not None:  # 3.3: a REST answer resumed a try that waits on no form
                from docify_provider import hitl_reattach

                return hitl_reattach.answer_found_form(self, context, state, answer)
            if status == "success":
                run = run_from_record(event["run"], self.hook.config.base_url)
                return self._settle(context, state, run, user)
            if status == "paused":
                self._started(state, task_id, run_id, user)
                return self._on_paused(context, str(run_id), event.get("form") or {})
            exc = error_from_event(event, root=self._error_root())
            if not self._forget_if_settled(state, exc, run_id=run_id) and run_id:
                self._started(state, task_id, run_id, user)
            raise exc
        finally:
            self.hook.close()

    # -- post-processing ------------------------------------------------------------------------

    def _finish(self, context: Context, state: TaskState, run: WorkflowRun) -> dict[str, Any]:
        from docify_provider.xcom import dify_run_to_xcom

        log_run(self.log, run)
        files = [f for f in run.files if f.file_url]
        paths = self._store_files(context, files)
        if self.emit_asset_events and paths:
            extra = {"workflow_run_id": run.workflow_run_id, "status": run.status, "usage": dict(run.usage)}
            self._emit_file_events(context, paths, extra)
        xcom = dify_run_to_xcom(run, paths)
        self.ledger(state).succeeded()
        if self.multiple_outputs:
            self._push_keys_airflow_3_0_refuses(context, xcom)
        return xcom

    # -- stopping -------------------------------------------------------------------------------

    def _stop_running(self, why: str) -> None:
        """Stop the Dify task in flight (with the run's user), then log what its status really became."""
        if getattr(self, "_stop_handled", False):
            return  # Airflow calls on_kill after an execution_timeout the operator has handled
        self._stop_handled = True
        running = self._running
        if running is None or not running[0]:
            run_id = running[1] if running else None
            self.log.warning(
                "%s: the Dify task id of %s is not known%s, so it cannot be stopped; it goes on on Dify "
                "(a blocking run reports its task id only with its answer; the streaming operator can stop runs)",
                why,
                f"run {run_id}" if run_id else "the run",
                "" if run_id else " (no run id either)",
            )
            return
        task_id, run_id, user = running
        self.log.warning("%s: stopping Dify task %s (run %s)", why, task_id, run_id)
        try:
            run = self._stop_task(str(task_id), run_id, user)
        except Exception as exc:
            self.log.error("Could not stop Dify task %s (run %s); it may go on: %s", task_id, run_id, exc)
            return
        if run is None:
            self.log.warning("Asked Dify to stop task %s; the run's status could not be read", task_id)
        elif run.ended:
            self.log.warning("Dify run %s is now %s after the stop request", run_id, run.status)
        elif run.paused:
            # The newest Dify's stop reaches only a live engine; a paused run has none (Part C6).
            self.log.warning(
                "Dify answered success to the stop request, but run %s is still paused (status seen: paused): "
                "a paused run has no running engine for the stop to reach, so it waits on its form until it "
                "is answered or expires. The task does not wait for it; stop it in the Dify console if needed",
                run_id,
            )
        else:
            self.log.warning(
                "Dify answered success to the stop request, but run %s is still %s: the run goes on on Dify "
                "(and is billed); stop it in the Dify console if needed",
                run_id,
                run.status,
            )

    def _stop_task(self, task_id: str, run_id: str | None, user: str | None) -> WorkflowRun | None:
        """Ask Dify to stop the task, then read (a bounded number of times) what its run became."""
        return self.hook.stop_task(task_id, user=user, workflow_run_id=run_id)

    def on_kill(self) -> None:
        if "hook" in self.__dict__:
            self._stop_running("on_kill")
            self.hook.close()

    def _on_deferral_timeout(self, context: Context, error: Any) -> None:
        """``execution_timeout`` while deferred: stop the Dify task first (Airflow then fails the try).

        The triggerer has already dropped the trigger, so nothing else would stop the run: it would
        go on on Dify, billed, with no task watching it. The run and task ids come from the
        trigger's restart marker (written when ``workflow_started`` arrived).
        """
        marker = self._read_trigger_marker(context) or {}
        try:
            user = resolve_user(self, self.hook)
            self._running = (marker.get("task_id"), marker.get("workflow_run_id"), user)
            self._stop_running("execution_timeout while deferred")
        finally:
            self.hook.close()

    def _follow_on_worker(self, context: Context, state: TaskState, run_id: str, task_id: Any) -> Any:
        """The trigger failed: follow ``run_id`` here (events endpoint / run detail) and settle it.

        This try stays on the worker (a new deferral would meet the same failure); a pause cannot be
        waited on without a trigger, so it fails naming the run (clear the task once answered).
        """
        from docify_provider.dify.errors import DifyPausedError

        self.deferrable = False
        try:
            user = resolve_user(self, self.hook)
            self._started(state, task_id, run_id, user)
            run = self._follow(context, state, run_id, task_id, user)
            if run.paused:
                raise DifyPausedError(
                    f"Dify run {run_id} paused for human input, and its trigger failed, so this try cannot wait for "
                    "the answer: answer the form in Dify, then clear the task (it re-attaches to the run).",
                    run_id=run_id,
                    form=paused_form(run),
                )
            return self._settle(context, state, run, user)
        finally:
            self.hook.close()


def _failure_settles(exc: BaseException, *, run_known: bool) -> bool:
    """True when ``exc`` proves no Dify run is pending (see ``_forget_if_settled``)."""
    from docify_provider._core.errors import HTTPStatusError, RunFailedError

    if not outcome_known(exc):
        return False
    if isinstance(exc, RunFailedError):
        return True
    if run_known:
        return False
    if isinstance(exc, HTTPStatusError):
        return _is_run_request(str(getattr(exc, "endpoint", None) or ""))
    return True


def _is_run_request(endpoint: str) -> bool:
    """Whether ``endpoint`` (``"POST /path"``) sends a run: the Service API's ``/workflows[/{id}]/run``
    or the account API's ``/apps/{id}/run``, ``/apps/{id}:run`` and ``/apps/{id}/<mode>:run``.

    An HTTP error answering the run request itself proves nothing started (the outcome-unknown
    statuses were ruled out before). An error answering another request (a read, a re-attach)
    leaves the pending record as it is: it does not tell whether a run request went out.
    """
    method, _, path = endpoint.partition(" ")
    return method == "POST" and (path.endswith("/run") or path.endswith(":run"))


def _is_task_timeout(exc: BaseException) -> bool:
    return type(exc).__name__ in ("AirflowTaskTimeout", "TaskDeferralTimeout")


class DifyRunWorkflowOperator(_DifyRunOperatorBase):
    """Run the Dify workflow bound to the connection's key and wait for its answer (blocking).

    Returns the XCom of :func:`docify_provider.xcom.dify_run_to_xcom`. See the base class for the
    parameters.
    """

    def _buy(self, context: Context, state: TaskState, wire: dict[str, Any], user: str) -> WorkflowRun:
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
        self._started(state, run.task_id, run.workflow_run_id, user)
        return run


class DifyStreamWorkflowOperator(_DifyRunOperatorBase):
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

    def _consume(self, state: TaskState, events: Any, user: str) -> WorkflowRun:
        import dataclasses

        from docify_provider.dify.errors import DifyStreamIncompleteError
        from docify_provider.dify.models import WorkflowRun

        result: WorkflowRun | None = None
        try:
            with contextlib.closing(events):
                for event in events:
                    if event.workflow_run_id and (self._running is None or self._running[1] != event.workflow_run_id):
                        self._started(state, event.task_id, event.workflow_run_id, user)
                    log_workflow_event(self.log, event)
                    if event.event == "workflow_finished":
                        result = getattr(event, "result", None) or event.run
                    elif event.event == "workflow_paused":
                        form = event.form
                        self._pause_form = form.as_dict() if form else {}
                        data = {"status": "paused", **{k: v for k, v in event.data.items() if k != "status"}}
                        result = WorkflowRun.from_detail({**data, "id": event.workflow_run_id}, task_id=event.task_id)
        except BaseException as exc:
            self._forget_if_settled(state, exc)
            raise
        if result is None:  # pragma: no cover - the client raises before this
            raise DifyStreamIncompleteError("The Dify stream ended without a result")
        if result.task_id is None and self._running and self._running[0]:
            result = dataclasses.replace(result, task_id=self._running[0])
        return result

    def _settle(self, context: Context, state: TaskState, run: WorkflowRun, user: str) -> Any:
        if run.paused and getattr(self, "_pause_form", None):
            self._started(state, run.task_id, run.workflow_run_id, user)
            return self._on_paused(context, run.workflow_run_id, self._pause_form)
        return super()._settle(context, state, run, user)

    def _buy(self, context: Context, state: TaskState, wire: dict[str, Any], user: str) -> WorkflowRun:
        if self.deferrable:
            self._defer(context, state, wire, user, None, None)
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
            **self._trigger_identity(context, state),
        )
        if run_id is None:
            self.ledger(state).intend(task_id=None, workflow_run_id=None, user=user)
            try:
                ti.xcom_push(key=DIFY_MARKER_XCOM_KEY, value=dify_marker("deferred", deferred_at=now_iso()))
            except Exception:
                self.log.warning("Could not write the Dify restart marker; the trigger will look for it", exc_info=True)
        self.log.info("Deferring the Dify stream to the triggerer (user %s)", user)
        self.hook.close()
        # Airflow 3 does not bound a deferral by execution_timeout: the trigger's own timeout does
        # (then _on_deferral_timeout stops the Dify task).
        self.defer(trigger=trigger, method_name="execute_complete", timeout=self._deferral_timeout(context))

    def _deferral_timeout(self, context: Context) -> timedelta | None:
        """What is left of ``execution_timeout`` since the try started (None: no limit)."""
        if self.execution_timeout is None:
            return None
        started = getattr(context_ti(context), "start_date", None)
        if started is None:
            return self.execution_timeout
        elapsed = datetime.now(timezone.utc) - started
        return max(self.execution_timeout - elapsed, timedelta(seconds=1))


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
]
