"""The task-log lines of a Docify stream: one per event.

Kept in the wire layer (no Airflow) because two Airflow adapters tell the same story: the
streaming operator in the worker and the stream trigger in the triggerer (issue 18: the trigger
used to import this from the operator module, a hidden import cycle). Takes any logger-like
object (``logging.Logger``, a task's ``self.log``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from docify_provider._core.wording import clauses, priced, seconds

if TYPE_CHECKING:
    from docify_provider.docify.models import RunResult, StreamEvent


def result_summary(result: RunResult) -> str:
    """``run <id> succeeded in 5.20 s, cost 2 points``, each clause left out when Docify did not
    report its value (shared by the stream's COMPLETE line and the operator's closing line)."""
    took = seconds(result.elapsed_ms / 1000 if result.elapsed_ms is not None else None)
    head = f"run{' ' + result.run_id if result.run_id else ''} {'succeeded' if result.is_success else 'failed'}"
    return clauses(f"{head}{' in ' + took if took else ''}", priced(result.cost_points, "points", word="cost"))


def log_stream_event(log: logging.Logger | Any, event: StreamEvent) -> None:
    """One line in the task log per stream event (shared by the operator and the trigger)."""
    kind = event.type
    if kind == "START":
        log.info("Docify stream START: session %s", event.session_id or "(no id given)")
    elif kind in ("PREPARE_START", "PREPARE_END"):
        log.info("Docify stream %s%s", kind, f": {event.content}" if event.content else "")
    elif kind == "TEXT":
        log.info("Docify: %s", event.content if event.content is not None else "")
    elif kind == "COMPLETE":
        response = event.response
        if response is None:
            log.info("Docify stream COMPLETE")
        else:
            log.info("Docify stream COMPLETE: %s", result_summary(response))
    elif kind == "ERROR":
        session = f" (session {event.session_id})" if event.session_id else ""
        log.error("Docify stream ERROR%s: %s", session, event.error or "no error message given")
    else:
        log.debug("Docify stream event %s ignored", kind)


__all__ = ["log_stream_event", "result_summary"]
