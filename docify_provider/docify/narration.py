"""The task-log lines of a Docify stream: one per event.

Kept in the wire layer (no Airflow) because two Airflow adapters tell the same story: the
streaming operator in the worker and the stream trigger in the triggerer (issue 18: the trigger
used to import this from the operator module, a hidden import cycle). Takes any logger-like
object (``logging.Logger``, a task's ``self.log``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docify_provider.docify.models import StreamEvent


def log_stream_event(log: logging.Logger | Any, event: StreamEvent) -> None:
    """One line in the task log per stream event (shared by the operator and the trigger)."""
    kind = event.type
    if kind == "START":
        log.info("Docify stream START: session %s", event.session_id)
    elif kind in ("PREPARE_START", "PREPARE_END"):
        log.info("Docify stream %s%s", kind, f": {event.content}" if event.content else "")
    elif kind == "TEXT":
        log.info("Docify: %s", event.content if event.content is not None else "")
    elif kind == "COMPLETE":
        response = event.response
        if response is None:
            log.info("Docify stream COMPLETE")
        else:
            log.info(
                "Docify stream COMPLETE: run %s success=%s, cost %s points, elapsed %s ms",
                response.run_id,
                response.is_success,
                response.cost_points,
                response.elapsed_ms,
            )
    elif kind == "ERROR":
        log.error("Docify stream ERROR (session %s): %s", event.session_id, event.error)
    else:
        log.debug("Docify stream event %s ignored", kind)


__all__ = ["log_stream_event"]
