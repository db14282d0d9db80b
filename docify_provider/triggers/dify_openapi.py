"""``DifyAppRunTrigger``: hold a Dify account-API run (``DifyRunAppOperator``) in the triggerer.

The run is always started on the worker (inputs checked and files sent with the run request
there); the operator defers as soon as the stream names the run (``workflow_started``), having
written the run id into the restart marker. This trigger only follows that run: the account
API's events route (``GET /apps/{app_id}/tasks/{workflow_run_id}/events``) with the state
snapshot, re-attached on a cut (this API has no run-detail endpoint to poll instead). So a
triggerer restart re-attaches and can never start a second run: there is no run request in this
trigger at all.

It is :class:`~docify_provider.triggers.dify.DifyWorkflowTrigger` with another event source, stop
call and success payload; the marker, the event shapes, pause and error handling are inherited.
Kwargs hold the connection id, the app id and the run ids, never the token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from docify_provider.triggers.dify import DifyWorkflowTrigger

_CLASSPATH = "docify_provider.triggers.dify_openapi.DifyAppRunTrigger"


class DifyAppRunTrigger(DifyWorkflowTrigger):
    """Follow the account-API run ``workflow_run_id`` of app ``app_id`` and fire one event with its outcome.

    The success event adds ``app_id``, ``mode`` and, for chat-family apps, the run record's
    ``conversation_id`` (the answer is the run's ``outputs.answer``).
    """

    log_label = "Dify app run trigger"

    def __init__(
        self,
        *,
        app_id: str,
        workflow_run_id: str,
        mode: str | None = None,
        dify_openapi_conn_id: str = "dify_openapi_default",
        dify_task_id: str | None = None,
        conversation_id: str | None = None,
        user: str | None = None,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int = -1,
        try_number: int | None = None,
    ) -> None:
        super().__init__(
            inputs=None,
            dify_conn_id=dify_openapi_conn_id,
            user=user,
            workflow_run_id=workflow_run_id,
            dify_task_id=dify_task_id,
            dag_id=dag_id,
            task_id=task_id,
            run_id=run_id,
            map_index=map_index,
            try_number=try_number,
        )
        self.app_id = app_id
        self.mode = mode
        self.dify_openapi_conn_id = dify_openapi_conn_id
        self.conversation_id = conversation_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            _CLASSPATH,
            {
                "app_id": self.app_id,
                "workflow_run_id": self.workflow_run_id,
                "mode": self.mode,
                "dify_openapi_conn_id": self.dify_openapi_conn_id,
                "dify_task_id": self.dify_task_id,
                "conversation_id": self.conversation_id,
                "user": self.user,
                **self._identity_kwargs(),
            },
        )

    def _new_hook(self) -> Any:
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        return DifyOpenAPIHook(dify_openapi_conn_id=self.dify_openapi_conn_id)

    def _stream(self, attach_to: str | None, dify_task: str | None) -> AsyncIterator[Any]:
        # attach_to is always set: the kwargs name the run (the operator never defers before).
        # The run's task id is passed on: the frame of an already finished run names none (Part C3).
        task = dify_task or self.dify_task_id
        return self._hook().afollow_run(self.app_id, str(attach_to or self.workflow_run_id), task_id=task)

    def _observe(self, event: Any) -> None:
        raw = getattr(event, "raw", None) or {}
        if raw.get("conversation_id"):
            self.conversation_id = str(raw["conversation_id"])
        if raw.get("event") in ("message", "agent_message"):
            return  # the answer arrives whole in workflow_finished's outputs; chunks would flood the log
        super()._observe(event)

    def _success(self, payload: dict[str, Any]) -> dict[str, Any]:
        record = dict(payload.get("run") or {})
        if self.conversation_id:
            body = dict(record.get("body") or {})
            body.setdefault("conversation_id", self.conversation_id)
            record["body"] = body
        return {**payload, "run": record, "app_id": self.app_id, "mode": self.mode}

    async def _astop(self, dify_task: str, run_id: str | None) -> None:
        await self._hook().astop_task(self.app_id, dify_task, workflow_run_id=run_id)


__all__ = ["DifyAppRunTrigger"]
