"""``DifyAppRunTrigger``: hold a Dify account-API run (``DifyRunAppOperator``) in the triggerer.

The run is always started on the worker (inputs checked and files sent with the run request
there); the operator defers as soon as the stream names the run (``workflow_started``), having
written the run id into the restart marker. This trigger only follows that run: the account
API's events route (``GET /apps/{app_id}/tasks/{workflow_run_id}/events``) with the state
snapshot, re-attached on a cut (this API has no run-detail endpoint to poll instead). So a
triggerer restart re-attaches and can never start a second run: there is no run request in this
trigger at all.

It is the shared Dify run loop (:class:`~docify_provider.triggers.dify.DifyRunTriggerBase`) with
another event source, stop call, error family and success payload; the marker, the event shapes,
pause and error handling are the base's. Kwargs hold the connection id, the app id and the run
ids, never the token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from docify_provider.durable.policy import DIFY_OPENAPI
from docify_provider.triggers.base import RunProgress, RunSpec
from docify_provider.triggers.dify import DifyRunTriggerBase

_CLASSPATH = "docify_provider.triggers.dify_openapi.DifyAppRunTrigger"


class DifyAppRunTrigger(DifyRunTriggerBase):
    """Follow the account-API run ``workflow_run_id`` of app ``app_id`` and fire one event with its outcome.

    The success event adds ``app_id``, ``app_name`` (as the operator read it; None from a trigger
    serialized before it was passed), ``mode`` and, for chat-family apps, the run record's
    ``conversation_id`` (the answer is the run's ``outputs.answer``).
    """

    log_label = "Dify app run trigger"
    policy_backend = DIFY_OPENAPI

    def __init__(
        self,
        *,
        app_id: str,
        workflow_run_id: str,
        mode: str | None = None,
        app_name: str | None = None,
        dify_openapi_conn_id: str = "dify_openapi_default",
        dify_task_id: str | None = None,
        conversation_id: str | None = None,
        user: str | None = None,
        reattach: str | None = None,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int = -1,
        try_number: int | None = None,
    ) -> None:
        super().__init__()
        self.app_id = app_id
        self.workflow_run_id = workflow_run_id
        self.mode = mode
        self.app_name = app_name
        self.dify_openapi_conn_id = dify_openapi_conn_id
        self.dify_task_id = dify_task_id
        self.conversation_id = conversation_id
        self.user = user
        self.reattach = reattach
        self._set_identity(dag_id, task_id, run_id, map_index, try_number)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            _CLASSPATH,
            {
                "app_id": self.app_id,
                "workflow_run_id": self.workflow_run_id,
                "mode": self.mode,
                "app_name": self.app_name,
                "dify_openapi_conn_id": self.dify_openapi_conn_id,
                "dify_task_id": self.dify_task_id,
                "conversation_id": self.conversation_id,
                "user": self.user,
                "reattach": self.reattach,
                **self._identity_kwargs(),
            },
        )

    def _new_hook(self) -> Any:
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        return DifyOpenAPIHook(dify_openapi_conn_id=self.dify_openapi_conn_id)

    def _spec(self) -> RunSpec:
        # The kwargs always name the run: the operator never defers before the stream named it.
        # ``reattach`` says why when it is not the run the operator has just started.
        return RunSpec(run_id=self.workflow_run_id, task_id=self.dify_task_id, user=self.user, reattach=self.reattach)

    def _root(self) -> Any:
        from docify_provider.dify_openapi.errors import DifyOpenAPIError

        return DifyOpenAPIError

    def _open(self, client: Any, progress: RunProgress) -> AsyncIterator[Any]:
        # The run's task id is passed on: the frame of an already finished run names none (Part C3).
        run_id = str(progress.run_id or self.workflow_run_id)
        return client.follow_run(self.app_id, run_id, task_id=progress.task_id or self.dify_task_id)

    def _narrate(self, event: Any) -> None:
        raw = getattr(event, "raw", None) or {}
        if raw.get("conversation_id"):
            self.conversation_id = str(raw["conversation_id"])
        if raw.get("event") in ("message", "agent_message"):
            return  # the answer arrives whole in workflow_finished's outputs; chunks would flood the log
        super()._narrate(event)

    def _success(self, progress: RunProgress) -> dict[str, Any]:
        payload = super()._success(progress)
        record = dict(payload.get("run") or {})
        if self.conversation_id:
            body = dict(record.get("body") or {})
            body.setdefault("conversation_id", self.conversation_id)
            record["body"] = body
        return {**payload, "run": record, "app_id": self.app_id, "app_name": self.app_name, "mode": self.mode}

    async def _astop(self, client: Any, progress: RunProgress) -> None:
        await client.stop_task(self.app_id, str(progress.task_id), workflow_run_id=progress.run_id)


__all__ = ["DifyAppRunTrigger"]
