"""``DifyWorkflowRunSensor``: wait until a Dify workflow run has ended.

Reads ``GET /workflows/run/{id}`` (free) in ``poke``, ``reschedule`` or deferrable mode. Succeeds
on ``succeeded`` / ``partial-succeeded`` (returning the run's XCom dict), fails at once on
``failed`` / ``stopped`` or a rejected key; anything else (running, paused, 5xx) means "not yet".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue, conf

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class DifyWorkflowRunSensor(BaseSensorOperator):
    """Wait for Dify run ``workflow_run_id`` to end; its XCom is ``dify_run_to_xcom`` of the run.

    :param workflow_run_id: the run to watch. (templated)
    :param dify_conn_id: Airflow connection of type ``dify``. (templated)
    :param deferrable: wait in the triggerer (``DifyWorkflowRunTrigger``).
    """

    template_fields: Sequence[str] = ("dify_conn_id", "workflow_run_id")
    ui_color = "#e0e7ff"

    def __init__(
        self,
        *,
        workflow_run_id: str,
        dify_conn_id: str = "dify_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow_run_id = workflow_run_id
        self.dify_conn_id = dify_conn_id
        self.deferrable = deferrable

    def poke(self, context: Context) -> PokeReturnValue | bool:
        from airflow.providers.common.compat.sdk import AirflowFailException

        from docify_provider.dify.errors import DifyError
        from docify_provider.hooks.dify import DifyHook
        from docify_provider.xcom import dify_run_to_xcom

        hook = DifyHook(dify_conn_id=self.dify_conn_id)
        try:
            # One attempt per poke: the sensor's own schedule is the retry policy.
            hook.config = dataclasses.replace(hook.config, max_retries=0)
            run = hook.get_workflow_run(str(self.workflow_run_id))
        except DifyError as exc:
            if exc.permanent:
                raise AirflowFailException(f"Dify run sensor cannot succeed: {exc}") from exc
            self.log.info("Dify run %s not readable yet: %s", self.workflow_run_id, exc)
            return False
        finally:
            hook.close()
        if run.failed:
            said = f": {run.error}" if run.error else " (Dify gave no error message)"
            raise AirflowFailException(f"Dify run {run.workflow_run_id} ended {run.status}{said}")
        if not run.succeeded:
            self.log.info("Dify run %s is %s", run.workflow_run_id, run.status)
            return False
        self.log.info("Dify run %s %s", run.workflow_run_id, run.status)
        return PokeReturnValue(is_done=True, xcom_value=dify_run_to_xcom(run))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from docify_provider.triggers.dify import DifyWorkflowRunTrigger

        self.defer(
            trigger=DifyWorkflowRunTrigger(
                workflow_run_id=str(self.workflow_run_id),
                dify_conn_id=self.dify_conn_id,
                poll_interval=self.poke_interval,
                timeout=self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + max(self.poke_interval, 1.0)),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

        from docify_provider.dify.errors import DifyError
        from docify_provider.dify.models import run_from_record
        from docify_provider.events import error_from_event
        from docify_provider.hooks.dify import DifyHook
        from docify_provider.xcom import dify_run_to_xcom

        event = event or {}
        status = event.get("status")
        if status == "success":
            hook = DifyHook(dify_conn_id=self.dify_conn_id)
            return dify_run_to_xcom(run_from_record(event["run"], hook.config.base_url))
        if status == "timeout":
            message = str(event.get("message") or "Dify run sensor timed out")
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        exc = error_from_event(event, root=DifyError)
        raise AirflowFailException(f"Dify run sensor cannot succeed: {exc}") from exc


__all__ = ["DifyWorkflowRunSensor"]
