"""What is Dify-specific about the wire: the Workflow Service API's operations (sans-IO).

Paths are relative to the base URL, which includes ``/v1`` (``https://api.dify.ai/v1``). The
transport (``docify_provider._core.transport``) decides from each ``Endpoint`` whether a failed
request may be sent again: a run never is once it may have reached Dify.
"""

from __future__ import annotations

from typing import Any

from docify_provider._core.endpoints import Endpoint
from docify_provider._core.transport import DOWNLOAD

__all__ = [
    "DOWNLOAD",
    "ENDED_STATUSES",
    "EVENTS",
    "FAILED_STATUSES",
    "FORM",
    "FORM_SUBMIT",
    "INFO",
    "LOGS",
    "PARAMETERS",
    "RUN",
    "RUN_BY_ID",
    "RUN_DETAIL",
    "STOP",
    "STREAM",
    "STREAM_BY_ID",
    "UPLOAD",
    "Endpoint",
    "run_body",
]

INFO = Endpoint("info", "GET", "/info", repeatable=True)
PARAMETERS = Endpoint("parameters", "GET", "/parameters", repeatable=True)
UPLOAD = Endpoint("upload", "POST", "/files/upload", repeatable=True)
#: A run costs money and has no idempotency key: never re-sent once it may have reached Dify.
RUN = Endpoint("run", "POST", "/workflows/run", repeatable=False)
RUN_BY_ID = Endpoint("run", "POST", "/workflows/{workflow_id}/run", repeatable=False)
#: The same routes with ``response_mode: streaming``.
STREAM = Endpoint("stream", "POST", "/workflows/run", repeatable=False, streaming=True)
STREAM_BY_ID = Endpoint("stream", "POST", "/workflows/{workflow_id}/run", repeatable=False, streaming=True)
RUN_DETAIL = Endpoint("run_detail", "GET", "/workflows/run/{workflow_run_id}", repeatable=True, lookup=True)
#: Dify answers success to any stop (unknown, finished or someone else's task): safe to repeat.
STOP = Endpoint("stop", "POST", "/workflows/tasks/{task_id}/stop", repeatable=True)
#: Re-attach to a run's live events (the path says ``workflow``, singular; the id is the run id).
EVENTS = Endpoint("events", "GET", "/workflow/{workflow_run_id}/events", repeatable=True, streaming=True, lookup=True)
LOGS = Endpoint("logs", "GET", "/workflows/logs", repeatable=True)
#: A human-input form of a paused run (A7). Submitting twice is safe: the second gets 412 submitted.
FORM = Endpoint("form", "GET", "/form/human_input/{form_token}", repeatable=True, lookup=True)
FORM_SUBMIT = Endpoint("form_submit", "POST", "/form/human_input/{form_token}", repeatable=True)

#: A run in one of these has ended (``paused`` has not).
ENDED_STATUSES = frozenset({"succeeded", "failed", "stopped", "partial-succeeded"})
FAILED_STATUSES = frozenset({"failed", "stopped"})


def run_body(
    inputs: dict[str, Any], *, user: str, streaming: bool, files: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``POST /workflows/run`` body; ``response_mode`` always explicit (omitted means blocking)."""
    body: dict[str, Any] = {
        "inputs": inputs,
        "response_mode": "streaming" if streaming else "blocking",
        "user": user,
    }
    if files:
        body["files"] = files
    return body


def run_endpoint(*, streaming: bool, workflow_id: str | None) -> Endpoint:
    """The run route: the published workflow, or one version by id."""
    if workflow_id:
        return (STREAM_BY_ID if streaming else RUN_BY_ID).format(workflow_id=workflow_id)
    return STREAM if streaming else RUN
