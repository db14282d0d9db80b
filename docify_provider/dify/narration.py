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

from docify_provider._core.wording import clauses, counted, priced, seconds
from docify_provider.dify.forms import expiry_words

if TYPE_CHECKING:
    from docify_provider.dify.models import WorkflowEvent, WorkflowRun


def log_workflow_event(log: logging.Logger | Any, event: WorkflowEvent) -> None:
    """One line in the task log per stream event (shared by the operator and the trigger)."""
    kind = event.event
    node = event.node
    if kind == "workflow_started":
        task = f" (task {event.task_id})" if event.task_id else ""
        log.info("Dify workflow started: run %s%s", event.workflow_run_id, task)
    elif node is not None and kind == "node_started":
        log.info("Dify node started: %s (%s)", node.title, node.node_type)
    elif node is not None and kind == "node_finished":
        took = seconds(node.elapsed_time)
        facts = clauses(
            f"in {took}" if took else None, counted(node.tokens, "token"), priced(node.price, node.currency)
        )
        log.info("Dify node %s %s%s", node.title, node.status or "finished", f" {facts}" if facts else "")
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


def run_summary(run: WorkflowRun) -> str:
    """``run <id> succeeded in 79.9 s: 1,234 tokens, 5 steps, price 0.0012 USD; 2 output files``,
    each clause left out when Dify did not report its value ("price unknown" when it reported some
    nodes' usage only: ``usage["price_unknown"]`` says why)."""
    usage = run.usage or {}
    took = seconds(run.elapsed_time)
    facts = clauses(
        counted(run.total_tokens, "token"),
        counted(run.total_steps, "step"),
        priced(usage.get("total_price"), usage.get("currency"))
        or ("price unknown" if usage.get("price_unknown") else None),
    )
    return (
        f"run{' ' + run.workflow_run_id if run.workflow_run_id else ''} {run.status or 'ended'}"
        f"{' in ' + took if took else ''}{': ' + facts if facts else ''}; {counted(len(run.files), 'output file')}"
    )


def log_run(log: logging.Logger | Any, run: WorkflowRun) -> None:
    """The closing line of a run: status, time, tokens, steps, price and output files."""
    log.info("Dify %s", run_summary(run))


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


__all__ = ["describe_pause", "log_form", "log_run", "log_workflow_event", "run_summary"]
