"""``DifyRunAppOperator``: run any runnable app of a Dify account (user-scoped OpenAPI).

Workflow, chat, advanced-chat and completion apps are run streaming through
``DifyOpenAPIHook.run_app``; node progress reaches the task log. The flow (bought-once ledger,
re-attach by run id, ``on_pause``, stop on kill, XCom shaping) is the Service-API stream
operator's, reused by subclassing; only the hook calls differ (the app is named per call).

A chat/completion stream carries no workflow run id and the events route refuses to re-attach
to it (``mode_not_supported_for_event_reconnect``), so such a run is recorded by its task id and
a retry that finds it pending fails closed (``DifyOpenAPIOutcomeUnknownError``) rather than paying twice.

Deferral is not implemented yet: ``deferrable=True`` raises at construction, and
``[operators] default_deferrable`` is logged and not honoured (the run streams on the worker).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import conf

from docify_provider.durable.state import TaskState
from docify_provider.operators.base import resolve_user
from docify_provider.operators.dify import DifyStreamWorkflowOperator, log_workflow_event

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from docify_provider._core.errors import ProviderError
    from docify_provider.dify.models import WorkflowRun
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

DEFAULT_OPENAPI_CONN_ID = "dify_openapi_default"
CHAT_MODES = ("chat", "advanced-chat", "agent-chat", "completion")


class DifyRunAppOperator(DifyStreamWorkflowOperator):
    """Run a Dify app (id or exact name) with the account token of a ``dify_openapi`` connection.

    :param app: app id or exact name (resolved, ambiguous names raise listing the matches). (templated)
    :param query: the user message of chat / advanced-chat apps. (templated)
    :param conversation_id: continue this conversation (chat apps). (templated)
    :param dify_openapi_conn_id: Airflow connection of type ``dify_openapi``. (templated)

    The other parameters are ``DifyStreamWorkflowOperator``'s. XCom: the Dify workflow XCom plus
    ``app_id``, ``mode`` and, for chat/completion apps, ``answer`` and ``conversation_id``.
    """

    template_fields: Sequence[str] = (
        *DifyStreamWorkflowOperator.template_fields,
        "app",
        "query",
        "conversation_id",
        "dify_openapi_conn_id",
    )

    def __init__(
        self,
        *,
        app: str,
        query: str | None = None,
        conversation_id: str | None = None,
        dify_openapi_conn_id: str = DEFAULT_OPENAPI_CONN_ID,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if deferrable:
            raise ValueError(
                "DifyRunAppOperator: deferrable=True is not supported yet (the account API's trigger is not "
                "built); leave deferrable unset, or use DifyStreamWorkflowOperator with an app key to defer"
            )
        super().__init__(deferrable=False, **kwargs)
        self.app = app
        self.query = query
        self.conversation_id = conversation_id
        self.dify_openapi_conn_id = dify_openapi_conn_id
        #: ``[operators] default_deferrable`` is not honoured yet: the run streams on the worker (logged).
        self.requested_deferrable = conf.getboolean("operators", "default_deferrable", fallback=False)
        self._mode: str | None = None
        self._app_id: str | None = None

    def _error_root(self) -> type[ProviderError]:
        from docify_provider.dify_openapi.errors import DifyOpenAPIError

        return DifyOpenAPIError

    @cached_property
    def hook(self) -> DifyOpenAPIHook:  # type: ignore[override]
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        return DifyOpenAPIHook(dify_openapi_conn_id=self.dify_openapi_conn_id)

    def execute(self, context: Context) -> Any:
        if self.requested_deferrable:
            self.log.warning(
                "[operators] default_deferrable is on, but DifyRunAppOperator cannot defer yet: the run streams "
                "on this worker"
            )
        if not isinstance(self.app, str) or not self.app.strip():
            raise ValueError(f"app must be a Dify app id or exact name, got {self.app!r}")
        if self.inputs is not None and not isinstance(self.inputs, Mapping):
            raise TypeError(f"inputs must be a mapping of variable -> value, got {type(self.inputs).__name__}")
        resolved, _ = self.hook.client.prepare_run(self.app, self.inputs, query=self.query, validate=self.validate)
        self._app_id, self._mode = resolved.id, resolved.mode
        # the base flow, with the inputs checked above instead of the Service API's /parameters
        state = TaskState(context, self.log)
        self._ledger = None
        self._stop_handled = False
        user = resolve_user(self, self.hook)
        try:
            run = self._recover(context, state, user)
            if run is None:
                run = self._buy(context, state, dict(self.inputs or {}), user)
            return self._settle(context, state, run, user)
        except BaseException as exc:
            if type(exc).__name__ in ("AirflowTaskTimeout", "TaskDeferralTimeout"):
                self._stop_running("execution_timeout")
            raise
        finally:
            self.hook.close()

    def _buy(self, context: Context, state: TaskState, wire: dict[str, Any], user: str) -> WorkflowRun:
        self.ledger(state).intend(task_id=None, workflow_run_id=None, user=user)
        self.log.info("Sending Dify run of app %s (%s, streaming)", self._app_id, self._mode)
        events = self.hook.run_app(
            str(self._app_id),
            self.inputs,
            query=self.query,
            files=self.files,
            conversation_id=self.conversation_id or None,
            workflow_id=self.workflow_id or None,
            validate=False,
        )
        if self._mode in CHAT_MODES:
            return self._consume_chat(state, events, user)
        return self._consume(state, events, user)

    def _follow(self, context: Context, state: TaskState, run_id: str, task_id: str | None, user: str) -> WorkflowRun:
        if self._mode in CHAT_MODES:
            from docify_provider.dify_openapi.errors import DifyOpenAPIOutcomeUnknownError

            raise DifyOpenAPIOutcomeUnknownError(
                f"Dify {self._mode} run {run_id} of app {self._app_id} was started by an earlier try, and Dify's "
                "events route cannot re-attach to this app mode; it is not re-sent. Set allow_resubmit=True or "
                "clear the task state to start a new run."
            )
        self._running = (task_id, run_id, user)
        events = self.hook.task_events(str(self._app_id), run_id, include_state_snapshot=True)
        return self._consume(state, events, user)

    def _consume_chat(self, state: TaskState, events: Any, user: str) -> WorkflowRun:
        """Collect a chat/completion stream into a ``WorkflowRun`` (``outputs.answer``)."""
        import contextlib

        from docify_provider.dify.models import WorkflowRun

        answer: list[str] = []
        last: dict[str, Any] = {}
        try:
            with contextlib.closing(events):
                for event in events:
                    raw = dict(event.raw or {})
                    last = {**last, **{k: v for k, v in raw.items() if v is not None}}
                    task_id, message_id = raw.get("task_id"), raw.get("message_id") or raw.get("id")
                    if task_id and message_id and (self._running is None or self._running[1] != message_id):
                        self._started(state, task_id, message_id, user)
                    if raw.get("event") in ("message", "agent_message"):
                        answer.append(str(raw.get("answer") or ""))
                    else:
                        log_workflow_event(self.log, event)
        except BaseException as exc:
            self._forget_if_settled(state, exc)
            raise
        usage = ((last.get("metadata") or {}).get("usage")) or {}
        body = {
            "event": "workflow_finished",
            "task_id": last.get("task_id"),
            "workflow_run_id": last.get("message_id") or last.get("id"),
            "conversation_id": last.get("conversation_id"),
            "data": {
                "id": last.get("message_id") or last.get("id"),
                "status": "succeeded",
                "outputs": {"answer": "".join(answer)},
                "total_tokens": usage.get("total_tokens"),
                "created_at": last.get("created_at"),
                "files": last.get("files") or [],
            },
        }
        self.log.info("Dify %s answer: %s", self._mode, "".join(answer)[:500])
        return WorkflowRun.from_event(body, usage=dict(usage))

    def _finish(self, context: Context, state: TaskState, run: WorkflowRun) -> dict[str, Any]:
        xcom = super()._finish(context, state, run)
        xcom = {**xcom, "app_id": self._app_id, "mode": self._mode}
        if self._mode in CHAT_MODES:
            raw = run.raw if isinstance(run.raw, Mapping) else {}
            xcom["answer"] = (run.outputs or {}).get("answer")
            xcom["conversation_id"] = raw.get("conversation_id")
        return xcom

    def _stop_running(self, why: str) -> None:
        running = self._running
        if running is None or not running[0] or getattr(self, "_stop_handled", False):
            return super()._stop_running(why)
        self._stop_handled = True
        task_id, run_id, _user = running
        self.log.warning("%s: stopping Dify task %s (run %s)", why, task_id, run_id)
        try:
            self.hook.stop_task(str(self._app_id), str(task_id), workflow_run_id=run_id)
        except Exception as exc:
            self.log.error("Could not stop Dify task %s (run %s); it may go on: %s", task_id, run_id, exc)


__all__ = ["DifyRunAppOperator"]
