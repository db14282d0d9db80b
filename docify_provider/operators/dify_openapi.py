"""``DifyRunAppOperator``: run any runnable app of a Dify account (user-scoped OpenAPI).

Workflow, chat, advanced-chat and completion apps are run streaming through
``DifyOpenAPIHook.run_app``; node progress reaches the task log. The flow (bought-once ledger,
re-attach by run id, ``on_pause``, stop on kill, XCom shaping) is the shared Dify base's
(``operators/dify_run.py``), of which this operator and the Service API's are siblings; it adds
only what differs (the app, named per call; its hook, triggers, forms, chat answers and stop).

A chat/completion stream carries no workflow run id and the events route refuses to re-attach
to it (``mode_not_supported_for_event_reconnect``), so such a run is recorded by its task id and
a retry that finds it pending fails closed (``DifyOpenAPIOutcomeUnknownError``) rather than paying twice,
unless ``allow_resubmit=True`` (the run policy's row for a run that cannot be followed).

``deferrable=True`` (default ``[operators] default_deferrable``): the run is sent from the worker
(inputs checked, file parts sent with it) and the task defers as soon as the stream names the run
(``workflow_started``); the run id is in the ledger and the trigger's restart marker first.
``DifyAppRunTrigger`` then follows it by id through the events route with the state snapshot, so
no trigger (restarted or not) ever sends a run. Chat and completion apps cannot be re-attached by
Dify, so they stream on the worker even when deferrable (logged). The deferral is bounded by what
is left of ``execution_timeout``; when it lapses the Dify task is stopped (``stop_task``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, conf

from docify_provider.dify.narration import log_workflow_event
from docify_provider.durable.policy import DIFY_OPENAPI, Backend
from docify_provider.durable.state import TaskState
from docify_provider.operators.dify_run import EARLIER_TRY, RESUMED, DifyRunOperatorBase

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from docify_provider._core.errors import ProviderError
    from docify_provider.dify.inputs import InputPlan
    from docify_provider.dify.models import WorkflowRun
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

DEFAULT_OPENAPI_CONN_ID = "dify_openapi_default"
CHAT_MODES = ("chat", "advanced-chat", "agent-chat", "completion")
#: Modes whose runs the events route serves (re-attach, deferral); the others stream on the worker.
EVENT_MODES = ("workflow", "advanced-chat")


class DifyRunLogLink(BaseOperatorLink):
    """ "Dify run log": the app's run log in the Dify console (``<console>/app/<app_id>/logs``).

    The console is the connection's ``console_url`` extra, else the API host without
    ``/openapi/v1`` (a self-hosted Dify serves both). Airflow 3 computes a link on the worker when
    the task ends and keeps it in XCom (``_link_DifyRunLogLink``); the operator also writes it when
    it defers, so the link works while the run is followed from the triggerer.
    """

    name = "Dify run log"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        conn_id = getattr(operator, "dify_openapi_conn_id", DEFAULT_OPENAPI_CONN_ID)
        app_id = getattr(operator, "_app_id", None)
        if not app_id and hasattr(ti_key, "xcom_pull"):
            try:
                xcom = ti_key.xcom_pull(task_ids=ti_key.task_id)
            except Exception:
                xcom = None
            app_id = xcom.get("app_id") if isinstance(xcom, Mapping) else None
        return self.url_for(conn_id, {"app_id": app_id})

    @staticmethod
    def url_for(conn_id: str, xcom: Mapping[str, Any] | None) -> str:
        """The link for an XCom (or any mapping) naming ``app_id``; ``""`` when it names none."""
        from docify_provider.hitl import console_logs_url
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        app_id = xcom.get("app_id") if isinstance(xcom, Mapping) else None
        if not app_id:
            return ""
        config = DifyOpenAPIHook.config_from_connection(DifyOpenAPIHook.get_connection(conn_id))
        return console_logs_url(config, str(app_id)) or ""


class DifyRunAppOperator(DifyRunOperatorBase):
    """Run a Dify app (id or exact name) with the account token of a ``dify_openapi`` connection.

    :param app: app id or exact name (resolved, ambiguous names raise listing the matches). (templated)
    :param query: the user message of chat / advanced-chat apps. (templated)
    :param conversation_id: continue this conversation (chat apps). (templated)
    :param dify_openapi_conn_id: Airflow connection of type ``dify-openapi`` (or ``dify_openapi``). (templated)

    :param deferrable: follow the run from the triggerer once its stream names it (``DifyAppRunTrigger``;
        workflow and advanced-chat apps).

    The other parameters are ``DifyRunOperatorBase``'s. XCom: the Dify workflow XCom plus
    ``app_id``, ``app_name``, ``mode`` and, for chat/completion apps, ``answer`` and ``conversation_id``.
    """

    operator_extra_links = (DifyRunLogLink(),)
    policy_backend = DIFY_OPENAPI
    batch_operator = "DifyBatchAppOperator"

    template_fields: Sequence[str] = (
        *DifyRunOperatorBase.template_fields,
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
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.app = app
        self.query = query
        self.conversation_id = conversation_id
        self.dify_openapi_conn_id = dify_openapi_conn_id
        self._mode: str | None = None
        self._app_id: str | None = None
        #: The app's name, as the lookup or the describe read this try made gave it (no call of its own).
        self._app_name: str | None = None
        #: The inputs as ``_prepare`` checked them (``prepare_run``), sent as they are.
        self._plan: InputPlan | None = None
        #: The chat-family run's conversation id, once its stream named it (deferral).
        self._conversation: str | None = None

    def _error_root(self) -> type[ProviderError]:
        from docify_provider.dify_openapi.errors import DifyOpenAPIError

        return DifyOpenAPIError

    @cached_property
    def hook(self) -> DifyOpenAPIHook:
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        return DifyOpenAPIHook(dify_openapi_conn_id=self.dify_openapi_conn_id)

    def _prepare(self) -> None:
        """Resolve the app and check the inputs against it (a read; nothing is sent): the run policy
        needs the app's mode (whether its runs can be re-attached), and a bad input fails before any run."""
        if not isinstance(self.app, str) or not self.app.strip():
            raise ValueError(f"app must be a Dify app id or exact name, got {self.app!r}")
        if self.inputs is not None and not isinstance(self.inputs, Mapping):
            raise TypeError(f"inputs must be a mapping of variable -> value, got {type(self.inputs).__name__}")
        resolved, self._plan = self.hook.prepare_run(self.app, self.inputs, query=self.query, validate=self.validate)
        self._take_app(resolved)

    def _wire(self, user: str) -> dict[str, Any]:
        return dict(self.inputs or {})  # planned in _prepare (self._plan); run_app sends its file parts

    def _buy(self, context: Context, state: TaskState, wire: dict[str, Any], user: str) -> WorkflowRun:
        return self._send_until_started(context, state, lambda: self._send(context, state, user))

    def _send(self, context: Context, state: TaskState, user: str) -> WorkflowRun:
        """The run request from this worker (deferrable or not: the trigger only follows it by id)."""
        self.ledger(state).intend(task_id=None, workflow_run_id=None, user=user)
        defer = self.deferrable and self._mode in EVENT_MODES
        if self.deferrable and not defer:
            self.log.info(
                "deferrable=True, but a Dify %s app cannot be re-attached (its runs have no events route): the "
                "run streams on this worker",
                self._mode,
            )
        self.log.info(
            "Sending Dify run of app %s (%s, streaming%s)",
            self._app_id,
            self._mode,
            ", deferred once named" if defer else "",
        )
        events = self.hook.run_app(
            str(self._app_id),
            self._plan,  # checked once, in _prepare: sent as planned, file inputs as parts of the request
            query=self.query,
            files=self.files,
            conversation_id=self.conversation_id or None,
            workflow_id=self.workflow_id or None,
        )
        if defer:
            return self._defer_once_named(context, state, events, user)
        if self._mode in CHAT_MODES:
            return self._consume_chat(state, events, user)
        return self._consume(state, events, user)

    def _policy(self) -> Backend:
        """Workflow and advanced-chat runs are followed by id (the events route); chat and completion runs
        cannot be, so a retry that finds one pending re-sends only with ``allow_resubmit``."""
        self._ensure_app()
        if self._mode in EVENT_MODES:
            return DIFY_OPENAPI
        return DIFY_OPENAPI.without_reattach(f"Dify's events route cannot re-attach to a {self._mode} run")

    def _follow(self, context: Context, state: TaskState, run_id: str, task_id: str | None, user: str) -> WorkflowRun:
        """Follow the run by id through the events route (only runs the policy can re-attach to come here)."""
        self._running = (task_id, run_id, user)
        if self.deferrable:
            self._defer_app(context, state, run_id, task_id, user, reattach=EARLIER_TRY)
        return self._consume(state, self.hook.follow_run(str(self._app_id), run_id, task_id=task_id), user)

    def _defer_once_named(self, context: Context, state: TaskState, events: Any, user: str) -> WorkflowRun:
        """Read the run's stream until it names the run, record the ids, then defer to follow it by id.

        Dify goes on with a run whose stream is closed (it runs in Dify's workers), and this API
        re-attaches by run id, so the worker holds the connection only for the first event.
        """
        import contextlib

        from docify_provider.dify.errors import DifyStreamIncompleteError

        named: tuple[str, str | None] | None = None
        try:
            with contextlib.closing(events):
                for event in events:
                    raw = event.raw or {}
                    if raw.get("event") not in ("message", "agent_message"):
                        log_workflow_event(self.log, event)
                    self._conversation = raw.get("conversation_id") or self._conversation
                    if event.workflow_run_id and named is None:
                        named = (str(event.workflow_run_id), event.task_id)
                    # A chat-family run is named by its conversation too (Dify puts it on every event;
                    # read on until it is seen, so the XCom has it as the worker-side stream's has).
                    if named and (self._mode not in CHAT_MODES or self._conversation):
                        break
        except BaseException as exc:
            self._forget_if_settled(state, exc)
            raise
        if named is None:  # pragma: no cover - the client raises before a stream ends unnamed
            raise DifyStreamIncompleteError("The Dify stream ended before it named the run")
        run_id, task_id = named
        self._started(state, task_id, run_id, user)
        self._defer_app(context, state, run_id, task_id, user)
        raise AssertionError("unreachable: defer() raises")  # pragma: no cover

    def _defer_app(
        self,
        context: Context,
        state: TaskState,
        run_id: str,
        task_id: str | None,
        user: str,
        *,
        reattach: str | None = None,
    ) -> None:
        """Defer to ``DifyAppRunTrigger`` for run ``run_id`` (the marker names it first: restart-safe).

        ``reattach`` says why an earlier run is followed (a retry, a resume); None: the run this try
        has just started (the log says "follows", not "re-attaches").
        """
        from docify_provider.durable.ledger import now_iso
        from docify_provider.operators.base import context_ti
        from docify_provider.triggers.dify_openapi import DifyAppRunTrigger
        from docify_provider.xcom import DIFY_MARKER_XCOM_KEY, dify_marker

        marker = dify_marker("sent", sent_at=now_iso(), workflow_run_id=run_id, task_id=task_id, app_id=self._app_id)
        try:
            ti = context_ti(context)
            ti.xcom_push(key=DIFY_MARKER_XCOM_KEY, value=marker)
            link = DifyRunLogLink()
            url = link.url_for(self.dify_openapi_conn_id, {"app_id": self._app_id})
            ti.xcom_push(key=getattr(link, "xcom_key", "_link_DifyRunLogLink"), value=url)
        except Exception:
            self.log.warning(
                "Could not write the Dify restart marker (the ledger still holds the run id)", exc_info=True
            )
        trigger = DifyAppRunTrigger(
            app_id=str(self._app_id),
            workflow_run_id=run_id,
            mode=self._mode,
            app_name=self._app_name,
            dify_openapi_conn_id=self.dify_openapi_conn_id,
            dify_task_id=task_id,
            conversation_id=self._conversation or self.conversation_id or None,
            user=user,
            reattach=reattach,
            **self._trigger_identity(context, state),
        )
        task = f" (task {task_id})" if task_id else ""
        if reattach:
            self.log.info(
                "Deferring: the triggerer re-attaches to Dify run %s%s of app %s (%s)",
                run_id,
                task,
                self._app_id,
                reattach,
            )
        else:
            self.log.info("Deferring: the triggerer follows Dify run %s%s of app %s", run_id, task, self._app_id)
        self.hook.close()
        self.defer(trigger=trigger, method_name="execute_complete", timeout=self._deferral_timeout(context))

    def _reattach(self, context: Context, state: TaskState, run_id: str, task_id: str | None, user: str) -> None:
        """After a human answer: follow the resumed run from the triggerer (it may pause again)."""
        self._ensure_app()
        self._defer_app(context, state, run_id, task_id, user, reattach=RESUMED)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, hitl: dict[str, Any] | None = None
    ) -> Any:
        """Resume after a trigger: the app id, name and mode come from the event (else are resolved again)."""
        event = event or {}
        if event.get("app_id"):
            self._app_id, self._mode = str(event["app_id"]), event.get("mode")
            self._app_name = event.get("app_name") or self._app_name
        self._ensure_app()
        return super().execute_complete(context, event or None, hitl)

    def _form_backend(self, user: str) -> Any:
        from docify_provider.hitl import DifyAccountForms

        self._ensure_app()
        return DifyAccountForms(self.dify_openapi_conn_id, str(self._app_id))

    def _wait_without_form(self, context: Context, run_id: str, form: Mapping[str, Any]) -> Any:
        """A pause whose form is found nowhere (not in the event, not in the run's state snapshot)
        cannot be waited on here: this API has no run-detail endpoint to poll."""
        from docify_provider.dify.errors import DifyPausedError
        from docify_provider.hitl_reattach import answer_where, public_form

        where = answer_where(self, run_id, str(self._running[2] if self._running else ""))
        raise DifyPausedError(
            f"Dify run {run_id} paused for human input, but neither its events nor its state snapshot name a form "
            f"token to wait on; answer it in Dify ({where}), then clear the task (it re-attaches to the run).",
            run_id=run_id,
            form=public_form(form),
        )

    def _follow_on_worker(self, context: Context, state: TaskState, run_id: str, task_id: Any) -> Any:
        """The trigger failed: follow the run here through the events route (the app resolved first)."""
        self._ensure_app()
        return super()._follow_on_worker(context, state, run_id, task_id)

    def _ensure_app(self) -> None:
        """``_app_id`` / ``_mode`` on a resumed try (``execute`` did not run): resolve ``app`` (a read)."""
        if self._app_id is None or self._mode is None:
            self._take_app(self.hook.resolve_app(str(self.app)))

    def _take_app(self, resolved: Any) -> None:
        """The resolved app's id, mode and name (None when Dify gives it none), kept for the run and its XCom."""
        self._app_id, self._mode, self._app_name = resolved.id, resolved.mode, resolved.name or None

    def _chat_run_key(self, event: Any, raw: Mapping[str, Any]) -> str | None:
        """What names a chat-family run for a retry: an advanced-chat run is a workflow run, which the
        events route knows by its workflow run id (on every event from ``workflow_started``); a chat
        or completion run has only its message id (and no events route to re-attach through)."""
        if self._mode in EVENT_MODES:
            key = getattr(event, "workflow_run_id", None) or raw.get("workflow_run_id")
        else:
            key = raw.get("message_id") or raw.get("id")
        return str(key) if key else None

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
                    task_id, run_key = raw.get("task_id"), self._chat_run_key(event, raw)
                    if task_id and run_key and (self._running is None or self._running[1] != run_key):
                        self._started(state, task_id, run_key, user)
                    if raw.get("event") in ("message", "agent_message"):
                        answer.append(str(raw.get("answer") or ""))
                    else:
                        log_workflow_event(self.log, event)
        except BaseException as exc:
            self._forget_if_settled(state, exc)
            raise
        usage = ((last.get("metadata") or {}).get("usage")) or {}
        run_id = (self._running[1] if self._running else None) or last.get("message_id") or last.get("id")
        body = {
            "event": "workflow_finished",
            "task_id": last.get("task_id"),
            "workflow_run_id": run_id,
            "message_id": last.get("message_id"),
            "conversation_id": last.get("conversation_id"),
            "data": {
                "id": run_id,
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
        xcom = {**xcom, "app_id": self._app_id, "app_name": self._app_name, "mode": self._mode}
        if self._mode in CHAT_MODES:
            raw = run.raw if isinstance(run.raw, Mapping) else {}
            xcom["answer"] = (run.outputs or {}).get("answer")
            xcom["conversation_id"] = raw.get("conversation_id")
        return xcom

    def _stop_task(self, task_id: str, run_id: str | None, user: str | None) -> WorkflowRun | None:
        """The account API's stop (by app); the run's status is read back once, bounded by the
        client's ``STOP_WAIT_SECONDS`` (a paused run stays paused, C6): the Service API operator's
        ``_stop_running`` logs what was seen."""
        self._ensure_app()
        return self.hook.stop_task(str(self._app_id), task_id, workflow_run_id=run_id)


__all__ = ["DifyRunAppOperator", "DifyRunLogLink"]


# -- batch (issue 20): appended, the flow is operators/batch.py's --------------------------------------

from docify_provider.operators.batch import BatchOperatorBase  # noqa: E402 - kept below the single-run code


class DifyBatchAppOperator(BatchOperatorBase):
    """Run a Dify workflow app of an account once per item of ``inputs``, many at once (``BatchOperatorBase``).

    The app (id or exact name) is resolved once and every item is checked against its
    ``input_schema`` before anything is sent; an item's files go as parts of its run request. Items
    are followed by ``workflow_run_id`` (the events route), so a cut stream or a retry re-attaches.
    Only workflow apps: a chat-family run has no events to re-attach by and no run result to keep per
    item (map ``DifyRunAppOperator`` over such an app instead).

    :param app: app id or exact name. (templated)
    :param dify_openapi_conn_id: Airflow connection of type ``dify-openapi`` (or ``dify_openapi``). (templated)
    :param files: the ``files`` (system files) of every run. (templated)

    The other parameters are ``BatchOperatorBase``'s; ``outputs`` of an item are its run's outputs.
    """

    batch_backend = "dify_openapi"
    batch_key = "dify_app_batch"
    default_asset_alias = "dify_batches"
    template_fields: Sequence[str] = (*BatchOperatorBase.template_fields, "app", "dify_openapi_conn_id", "files")
    ui_color = "#e0e7ff"

    def __init__(
        self,
        *,
        app: str,
        dify_openapi_conn_id: str = DEFAULT_OPENAPI_CONN_ID,
        files: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.dify_openapi_conn_id = dify_openapi_conn_id
        self.files = files

    @cached_property
    def hook(self) -> DifyOpenAPIHook:
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        return DifyOpenAPIHook(dify_openapi_conn_id=self.dify_openapi_conn_id)

    def _conn_id(self) -> str:
        return str(self.dify_openapi_conn_id)

    def _options(self) -> dict[str, Any]:
        return {"app": self.app, "files": self.files}


__all__ += ["DifyBatchAppOperator"]
