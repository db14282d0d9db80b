"""What every backend's stream trigger shares: task instance identity, the restart marker, events.

A trigger may be restarted (triggerer crash, redeploy), and a run request must not be sent twice
by it. Before it sends, a trigger writes an XCom marker for its own task instance (``XCom.set``
through ``asgiref.sync_to_async``: works in the triggerer and under ``dag.test()``); a restarted
trigger reads it first and decides (Docify: outcome unknown; Dify: re-attach by the run id the
marker holds). When no marker can be read or written the trigger logs a warning and proceeds.
Every event it fires carries ``deferred_in_try`` (the try that deferred) and is an
``EventPayload`` (short ``repr`` in the task log).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from docify_provider.events import EventPayload


def fire(payload: Mapping[str, Any]) -> TriggerEvent:
    return TriggerEvent(EventPayload(payload))


def trigger_failed(exc: BaseException, *, sent: bool, **ids: Any) -> dict[str, Any]:
    """The ``trigger_failed`` payload: the trigger itself failed (not the run), so the worker takes over.

    ``sent`` is False only when this trigger knows it sent nothing (it failed before its run
    request); ``ids`` name what it saw (``workflow_run_id`` / ``task_id``, ``session_id``). The
    worker, which reads the connection itself, follows the run or says what is known
    (``RunOperatorBase._after_trigger_failure``). The message is the exception's, never a connection.
    """
    return {"status": "trigger_failed", "sent": sent, "message": f"{type(exc).__name__}: {exc}", **ids}


def marker_says_deferred(marker: Any) -> bool:
    """The operator's ``{"state": "deferred"}`` marker: no trigger has sent the run yet."""
    return isinstance(marker, dict) and marker.get("state") == "deferred"


def _xcom_class() -> Any:
    from airflow.providers.common.compat.sdk import XCom

    return XCom


class MarkerTrigger(BaseTrigger):
    """A trigger that knows its task instance and guards its run request with an XCom marker.

    Subclasses set ``marker_key`` (and ``legacy_marker_key``, read only when the current key
    holds nothing) and ``log_label``, and call ``_set_identity`` in ``__init__``.
    """

    marker_key: ClassVar[str]
    legacy_marker_key: ClassVar[str | None] = None
    #: How the trigger names itself in warnings ("Docify stream trigger").
    log_label: ClassVar[str] = "stream trigger"

    dag_id: str | None
    task_id: str | None
    run_id: str | None
    map_index: int
    try_number: int | None

    def _set_identity(
        self,
        dag_id: str | None,
        task_id: str | None,
        run_id: str | None,
        map_index: int | None,
        try_number: int | None,
    ) -> None:
        self.dag_id = dag_id
        self.task_id = task_id
        self.run_id = run_id
        self.map_index = -1 if map_index is None else int(map_index)
        self.try_number = try_number

    def _identity_kwargs(self) -> dict[str, Any]:
        """The identity part of ``serialize()``'s kwargs."""
        return {
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "map_index": self.map_index,
            "try_number": self.try_number,
        }

    def _fire(self, payload: Mapping[str, Any]) -> TriggerEvent:
        return fire({**payload, "deferred_in_try": self.try_number})

    async def _connection_failed(self, hook: Any, *, sent: bool, **ids: Any) -> TriggerEvent | None:
        """Resolve the trigger's connection before anything is sent; on failure, the event handing the run back.

        A triggerer may not see a connection the worker sees (``airflow dags test`` runs triggers
        inline without the metadata database's connections; a secrets backend configured only on
        workers). Read first, the failure is known to have sent nothing, instead of surfacing
        inside the run request as "may have reached" the service.
        """
        try:
            await hook.aget_config()
        except Exception as exc:
            self.log.error(
                "%s cannot read its connection (%s: %s); the task resumes on the worker, which reads it itself",
                self.log_label,
                type(exc).__name__,
                exc,
            )
            return self._fire(trigger_failed(exc, sent=sent, **ids))
        return None

    # -- restart guard --------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any] | None:
        ti = self.task_instance
        if ti is not None and getattr(ti, "run_id", None):
            map_index = getattr(ti, "map_index", -1)
            return {
                "dag_id": ti.dag_id,
                "task_id": ti.task_id,
                "run_id": ti.run_id,
                "map_index": -1 if map_index is None else int(map_index),
            }
        if self.dag_id and self.task_id and self.run_id:
            return {"dag_id": self.dag_id, "task_id": self.task_id, "run_id": self.run_id, "map_index": self.map_index}
        return None

    async def _read_marker(self, ident: Mapping[str, Any] | None) -> Any:
        if ident is None:
            self.log.warning("%s: no task instance identity; restart guard disabled", self.log_label)
            return None
        from asgiref.sync import sync_to_async

        get_one = sync_to_async(_xcom_class().get_one)
        try:
            marker = await get_one(key=self.marker_key, **ident)
        except Exception as exc:
            self.log.warning("%s: cannot read the restart marker (%s); proceeding", self.log_label, exc)
            return None
        if marker is not None or self.legacy_marker_key is None:
            return marker
        # No marker under the current key: the task deferred under an earlier build, which kept it
        # under the old key (and whose trigger may have sent the run). Only then is the old key read:
        # Airflow logs every XCom it does not find at error level, in every trigger's log.
        try:
            return await get_one(key=self.legacy_marker_key, **ident)
        except Exception as exc:
            self.log.warning("%s: cannot read the restart marker's old key (%s)", self.log_label, exc)
            return None

    async def _write_marker(self, ident: Mapping[str, Any] | None, value: dict[str, Any]) -> bool:
        if ident is None:
            return False
        from asgiref.sync import sync_to_async

        try:
            await sync_to_async(_xcom_class().set)(key=self.marker_key, value=value, **ident)
        except Exception as exc:
            self.log.warning(
                "%s: cannot write the restart marker (%s); proceeding without the guard "
                "(a triggerer restart could re-send this run)",
                self.log_label,
                exc,
            )
            return False
        return True


__all__ = ["MarkerTrigger", "fire", "marker_says_deferred", "trigger_failed"]
