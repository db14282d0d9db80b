"""The task-log lines of a Dify run: one per stream event, one per finished run, one per pause.

Kept in the wire layer (no Airflow) because two Airflow adapters tell the same story: the
operator that follows a stream in the worker and the trigger that follows it in the triggerer
(issue 18: the trigger used to import this from the operator module, a hidden import cycle).
Each function takes any logger-like object (``logging.Logger``, a task's ``self.log``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from docify_provider.dify.forms import expiry_words

if TYPE_CHECKING:
    from docify_provider.dify.models import WorkflowEvent, WorkflowRun


def log_workflow_event(log: logging.Logger | Any, event: WorkflowEvent) -> None:
    """One line in the task log per stream event (shared by the operator and the trigger)."""
    kind = event.event
    node = event.node
    if kind == "workflow_started":
        log.info("Dify workflow started: run %s (task %s)", event.workflow_run_id, event.task_id)
    elif node is not None and kind == "node_started":
        log.info("Dify node started: %s (%s)", node.title, node.node_type)
    elif node is not None and kind == "node_finished":
        elapsed = f"{node.elapsed_time:.2f}s" if node.elapsed_time is not None else "?"
        log.info(
            "Dify node %s %s in %s, %s tokens, price %s %s",
            node.title,
            node.status,
            elapsed,
            node.tokens if node.tokens is not None else 0,
            node.price if node.price is not None else 0,
            node.currency or "",
        )
    elif kind == "text_chunk":
        log.info("Dify: %s", event.text or "")
    elif kind == "workflow_finished":
        # A run that succeeded gets its one closing line when its result is kept (the operator's
        # ``_finish``), which also follows a trigger's stream: said here too, it was printed twice.
        run = getattr(event, "result", None) or event.run
        if run is not None and not run.succeeded:
            log_run(log, run)
    elif kind == "human_input_required":
        log.info("Dify node %s asks for human input", event.data.get("node_title") or "(untitled)")
    elif kind == "workflow_paused":
        log.debug("Dify run %s paused", event.workflow_run_id)  # the pause's line is log_form's, once
    else:
        log.debug("Dify stream event %s", kind)


def log_run(log: logging.Logger | Any, run: WorkflowRun) -> None:
    """The closing line of a run: status, time, tokens, steps, price and output files."""
    usage = run.usage or {}
    log.info(
        "Dify run %s %s in %s s: %s tokens, %s steps, price %s %s; %d output file(s)",
        run.workflow_run_id,
        run.status,
        _seconds(run.elapsed_time),
        run.total_tokens,
        run.total_steps,
        usage.get("total_price"),
        usage.get("currency") or "",
        len(run.files),
    )


def log_form(log: logging.Logger | Any, form: Mapping[str, Any], run_id: str | None) -> None:
    """The line a pause for human input leaves in the task log (``form``: ``FormRequest.as_dict()``).
    INFO: a workflow built to ask a person is doing what it should; what goes wrong is a warning."""
    log.info("Dify run %s paused for human input: %s", run_id, describe_pause(form))


def describe_pause(form: Mapping[str, Any]) -> str:
    """``form 'Review', actions [Approve, Reject], expires <time>``, with nothing printed as None."""
    title = form.get("title")
    parts = [f"form {title!r}" if title else "an untitled form"]
    actions = [str(a.get("title") or a.get("id")) for a in form.get("actions") or [] if isinstance(a, Mapping)]
    if actions:
        parts.append(f"actions [{', '.join(actions)}]")
    parts.append(expiry_words(form.get("expiration_time")))
    return ", ".join(parts)


def _seconds(value: float | None) -> str | None:
    """A run's elapsed time for people: ``79.9``, not ``79.904321``."""
    return None if value is None else f"{value:.1f}"


__all__ = ["describe_pause", "log_form", "log_run", "log_workflow_event"]
