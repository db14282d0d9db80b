"""The shared base of the Dify run operators: the Service API's and the account API's, siblings over it.

One flow for every Dify run operator (``DifyRunWorkflowOperator``, ``DifyStreamWorkflowOperator``,
``DifyRunAppOperator``): the run policy over the bought-once ledger (``dify_state``: the intent
before sending, fails closed; the ``task_id`` / ``workflow_run_id`` the moment they are known; the
result at once), then reuse, re-attach or send; a stream's events consumed into the run; a pause
handed to ``DifyPauseHandling``; the result kept and post-processed; ``on_kill`` and
``execution_timeout`` stop the Dify task; a trigger's event resumed (``execute_complete``), and a
failed trigger's run followed on the worker.

Each API adds only what differs: its hook and connection, how inputs are checked (``_prepare``,
``_wire``), how a run is sent (``_buy``) and followed by id (``_follow``), its triggers
(``_reattach``, ``_wait_without_form``), its form backend, how its task is stopped, its XCom extras.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from docify_provider.dify.narration import log_run, log_workflow_event
from docify_provider.durable.policy import DIFY, Action, Decision
from docify_provider.durable.state import TaskState
from docify_provider.hooks.base import resolve_user
from docify_provider.operators.base import context_ti, is_task_timeout, map_index, outcome_known
from docify_provider.operators.dify_hitl import DifyPauseHandling
from docify_provider.operators.fail_fast import fails_fast
from docify_provider.xcom import DIFY_MARKER_XCOM_KEY, DIFY_STATE_KEY

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from docify_provider._core.errors import ProviderError
    from docify_provider.dify.models import WorkflowRun

#: Default name of the ``AssetAlias`` the run operators emit output-file asset events through.
DEFAULT_ASSET_ALIAS = "dify_outputs"
#: Why a trigger re-attaches to a run (its log line): an earlier try's run, or one resumed by an answer.
EARLIER_TRY = "an earlier try started it"
RESUMED = "resumed after human input"


def paused_form(run: WorkflowRun) -> dict[str, Any]:
    """The human-input form a paused run's answer names (``reasons``), as ``FormRequest.as_dict()``."""
    from docify_provider.dify.models import form_of_pause

    raw: Mapping[str, Any] = run.raw if isinstance(run.raw, Mapping) else {}
    inner = raw.get("data")
    return form_of_pause(inner if isinstance(inner, Mapping) else raw)


class DifyRunOperatorBase(DifyPauseHandling):
    """Shared parameters and flow of the Dify run operators (not for direct use).

    :param inputs: variable -> value, checked against the app's parameters before any upload or run;
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
    :param pause_poll_interval: seconds between run-state reads while paused.
    :param force_rerun: start a new run even when an earlier try already started or bought one.
    :param allow_resubmit: send the run even when an earlier try may have started one that cannot
        be followed (its run id never arrived, or the app mode cannot be re-attached): risk of paying twice.
    :param max_wait_not_started: seconds (default 600) to keep sending the run again while Dify turns it
        away with HTTP 429 before starting it (its app's cap of runs at once, ``Retry-After`` else
        backoff), within ``execution_timeout``; 0 fails at the first 429.
    """

    state_key = DIFY_STATE_KEY
    label = "Dify"
    marker_xcom_key = DIFY_MARKER_XCOM_KEY
    policy_backend = DIFY
    default_asset_alias = DEFAULT_ASSET_ALIAS
    deferrable = False

    template_fields: Sequence[str] = ("inputs", "user", "files", "workflow_id", "attachments_to")
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json", "files": "json"}
    ui_color = "#e0e7ff"

    def __init__(
        self,
        *,
        files: list[Any] | None = None,
        workflow_id: str | None = None,
        on_pause: str = "wait",
        pause_poll_interval: float = 30.0,
        **kwargs: Any,
    ) -> None:
        if on_pause not in ("wait", "fail"):
            raise ValueError(f"on_pause must be 'wait' or 'fail', got {on_pause!r}")
        super().__init__(**kwargs)
        self.files = files
        self.workflow_id = workflow_id
        self.on_pause = on_pause
        self.pause_poll_interval = pause_poll_interval
        self._running = None
        #: Set once a stop was attempted (or found impossible) for this try.
        self._stop_handled = False
        #: This try looked its lost run up in the app's logs (``_find_lost_run``): a failed look is final
        #: (``fail_fast``), as the next try's would find what this one found.
        self._logs_searched = False
        #: The form a stream's ``workflow_paused`` named, for ``_settle``.
        self._pause_form: dict[str, Any] | None = None

    # -- the shared flow ------------------------------------------------------------------------

    @fails_fast
    def execute(self, context: Context) -> Any:
        self._check_output_targets()
        self._prepare()
        state = TaskState(context, self.log)
        self._ledger = None
        self._stop_handled = False
        user = resolve_user(self, self.hook)
        try:
            run = self._recover(context, state, user)
            if run is None:
                run = self._buy(context, state, self._wire(user), user)
            return self._settle(context, state, run, user)
        except BaseException as exc:
            if is_task_timeout(exc):
                self._stop_running("execution_timeout")
            raise
        finally:
            self.hook.close()

    def _prepare(self) -> None:
        """Before the ledger is read: what the run policy needs to know of the run (the account API: its app)."""

    def _wire(self, user: str) -> dict[str, Any]:
        """The inputs as the run request sends them, checked (and files uploaded) before anything is paid."""
        raise NotImplementedError

    def _buy(self, context: Context, state: TaskState, wire: dict[str, Any], user: str) -> WorkflowRun:
        raise NotImplementedError

    def _follow(self, context: Context, state: TaskState, run_id: str, task_id: str | None, user: str) -> WorkflowRun:
        """Re-attach to a run an earlier try (or a failed trigger) started, by its id."""
        raise NotImplementedError

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

    def _find_lost_run(self, state: TaskState, decision: Decision) -> Decision:
        """An earlier try (or its trigger) may have sent the run, and its id never arrived: look for it in
        the app's logs (the end user and time the ledger's pending record holds) and re-attach to it.

        The deferred stream's trigger sends the run, so its id lives only in the trigger's restart
        marker until the task resumes; a try that Airflow fails before it resumes (apache/airflow#67287)
        or that is cleared starts the next one with that marker purged. Exactly one run of that user
        created since the record is the run (its id is written to the record, then it is followed as
        any known run); none by ``recovery_timeout`` or more than one fails closed
        (``DifyOutcomeUnknownError`` naming what was found). Nothing is ever re-sent.
        """
        from datetime import datetime

        from docify_provider.dify.stream import LostRunSearch

        self._logs_searched = True
        try:
            sent_at = datetime.fromisoformat(str(decision.when)).timestamp()
        except ValueError:
            return dataclasses.replace(decision, action=Action.UNKNOWN)
        search = LostRunSearch(str(decision.user), sent_at, self.hook.config, who=decision.who, todo=decision.todo)
        self.log.info(
            "%s%s may have sent a Dify run request (at or after %s) whose run id never arrived; looking for the run "
            "in the app's logs (%s)",
            decision.who[:1].upper(),
            decision.who[1:],
            decision.when,
            search.window(),
        )
        run_id = self.hook.find_run(search)
        self.log.info(
            "Found Dify run %s in the app's logs (%s; the only run there since %s's pending record); re-attaching "
            "to it instead of starting a new run",
            run_id,
            search.window(),
            decision.who,
        )
        self.ledger(state).started(workflow_run_id=run_id)
        return dataclasses.replace(decision, action=Action.REATTACH, run_id=run_id, message="")

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

        if run.paused and self._pause_form:
            self._started(state, run.task_id, run.workflow_run_id, user)
            return self._on_paused(context, run.workflow_run_id, self._pause_form)
        if run.paused:
            self._started(state, run.task_id, run.workflow_run_id, user)
            return self._on_paused(context, run.workflow_run_id, paused_form(run))
        self.ledger(state).bought(run_record(run), task_id=run.task_id, workflow_run_id=run.workflow_run_id)
        self._running = None
        return self._finish(context, state, run)

    def _consume(self, state: TaskState, events: Any, user: str) -> WorkflowRun:
        """Read a run's workflow events into the run: ids recorded as they appear, each event narrated."""
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
            self.hook.forget_description_if_refused(exc)  # refused inputs: the next task reads them again
            if not self._forget_if_settled(state, exc, run_id=run_id) and run_id:
                self._started(state, task_id, run_id, user)
            raise exc
        finally:
            self.hook.close()

    # -- deferral -------------------------------------------------------------------------------

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

    def _deferral_timeout(self, context: Context) -> timedelta | None:
        """What is left of ``execution_timeout`` since the try started (None: no limit)."""
        import time

        deadline = self._execution_deadline(context)
        if deadline is None:
            return None
        return max(timedelta(seconds=deadline - time.time()), timedelta(seconds=1))

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
        self.log.warning("%s: stopping Dify task %s%s", why, task_id, f" (run {run_id})" if run_id else "")
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
        """Ask Dify to stop the task, then read what its run became (each API's stop; ``_stop_running`` logs it)."""
        raise NotImplementedError

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


__all__ = ["DEFAULT_ASSET_ALIAS", "EARLIER_TRY", "RESUMED", "DifyRunOperatorBase", "paused_form"]
