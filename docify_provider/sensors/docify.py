"""``DocifyScenarioSensor``: wait until the Docify scenario bound to a key is available.

Pokes ``GET /v1/scenario/info`` (free of charge) in ``poke``, ``reschedule`` or deferrable mode.
Done when the scenario answers and, if ``expected_parameters`` is given, offers every one of those
variables. A rejected key (HTTP 401/403) or an unusable connection fails the task at once instead
of poking until the timeout; other failures (5xx, 429, network) just mean "not yet".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue, conf

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from docify_provider.hooks.docify import DocifyHook


class DocifyScenarioSensor(BaseSensorOperator):
    """Wait for the Docify scenario (and optionally some of its parameters) to be available.

    Returns (pushes as XCom) the scenario summary: ``scenario_id``, ``scenario_code``,
    ``scenario_name``, ``description``, ``product_id`` and ``parameters`` (``variable``, ``type``,
    ``label``, ``required``, ``max_length``, ``options``).

    :param docify_conn_id: Airflow connection of type ``docify``. (templated)
    :param expected_parameters: variable names the scenario must offer before the sensor succeeds.
        (templated)
    :param deferrable: wait in the triggerer (``DocifyScenarioAvailableTrigger``, one poll every
        ``poke_interval`` seconds) instead of a worker slot.
    """

    template_fields: Sequence[str] = ("docify_conn_id", "expected_parameters")
    ui_color = "#dbeafe"

    def __init__(
        self,
        *,
        docify_conn_id: str = "docify_default",
        expected_parameters: Sequence[str] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.docify_conn_id = docify_conn_id
        self.expected_parameters = expected_parameters
        self.deferrable = deferrable

    def _hook(self) -> DocifyHook:
        from docify_provider.hooks.docify import DocifyHook

        hook = DocifyHook(docify_conn_id=self.docify_conn_id)
        # One attempt per poke: the sensor's own schedule is the retry policy.
        hook.config = dataclasses.replace(hook.config, max_retries=0)
        return hook

    def poke(self, context: Context) -> PokeReturnValue | bool:
        from airflow.providers.common.compat.sdk import AirflowFailException

        from docify_provider.docify.errors import DocifyAuthenticationError, DocifyConfigError, DocifyError
        from docify_provider.xcom import scenario_summary

        try:
            hook = self._hook()
            try:
                info = hook.get_scenario_info(refresh=True)
            finally:
                hook.close()
        except (DocifyAuthenticationError, DocifyConfigError) as exc:
            raise AirflowFailException(f"Docify scenario sensor cannot succeed: {exc}") from exc
        except DocifyError as exc:
            self.log.info("Docify scenario not available yet: %s", exc)
            return False
        offered = {p.variable for p in info.parameters}
        missing = [p for p in self.expected_parameters or [] if p not in offered]
        if missing:
            self.log.info(
                "Docify scenario %s does not offer %s yet (offers %s)", info.scenario_code, missing, sorted(offered)
            )
            return False
        self.log.info("Docify scenario %s (%s) is available", info.scenario_name, info.scenario_code)
        return PokeReturnValue(is_done=True, xcom_value=scenario_summary(info))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from docify_provider.triggers.docify import DocifyScenarioAvailableTrigger

        self.defer(
            trigger=DocifyScenarioAvailableTrigger(
                docify_conn_id=self.docify_conn_id,
                expected_parameters=list(self.expected_parameters or []) or None,
                poke_interval=self.poke_interval,
                timeout=self.timeout,
            ),
            method_name="execute_complete",
            # The triggerer enforces this too; the trigger itself reports a timeout just before.
            timeout=timedelta(seconds=self.timeout + max(self.poke_interval, 1.0)),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        from airflow.providers.common.compat.sdk import (
            AirflowFailException,
            AirflowSensorTimeout,
            AirflowSkipException,
        )

        from docify_provider.events import error_from_event

        event = event or {}
        status = event.get("status")
        if status == "success":
            self.log.info("Docify scenario is available")
            return event.get("scenario")
        if status == "timeout":
            message = str(event.get("message") or "Docify scenario sensor timed out")
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        exc = error_from_event(event)
        raise AirflowFailException(f"Docify scenario sensor cannot succeed: {exc}") from exc


__all__ = ["DocifyScenarioSensor"]
