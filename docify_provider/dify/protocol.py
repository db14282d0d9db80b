"""What is Dify-specific about the wire: the Workflow Service API's operations (sans-IO).

Paths are relative to the base URL, which includes ``/v1`` (``https://api.dify.ai/v1``). The
transport (``docify_provider._core.transport``) decides from each ``Endpoint`` whether a failed
request may be sent again: a run never is once it may have reached Dify.
"""

from __future__ import annotations

from typing import Any

from docify_provider._core.endpoints import Endpoint
from docify_provider._core.errors import ProviderError
from docify_provider._core.transport import DOWNLOAD
from docify_provider.dify.errors import DifyBadRequestError, DifyRunFailedError

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
    "PIPELINE_ERROR_CODES",
    "RUN",
    "RUN_BY_ID",
    "RUN_DETAIL",
    "STOP",
    "STREAM",
    "STREAM_BY_ID",
    "UPLOAD",
    "Endpoint",
    "error_event_message",
    "pipeline_error",
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


#: Codes of a blocking run that hit a model-provider error: the newest Dify answers them as an
#: HTTP error (400, 429 for ``rate_limit_error``) instead of a 200 with ``status: failed`` (Part C2).
#: The run was started (and may be billed) and failed: none of them means "nothing was started".
PIPELINE_ERROR_CODES = frozenset(
    {
        "provider_not_initialize",
        "provider_quota_exceeded",
        "model_currently_not_support",
        "completion_request_error",
        "rate_limit_error",
    }
)


def pipeline_error(error: ProviderError, endpoint: Endpoint) -> ProviderError:
    """``error`` as a run's model-provider failure when it is one (a run endpoint, a
    ``PIPELINE_ERROR_CODES`` code), else unchanged.

    Why: a 429 on a run request otherwise reads as "Dify turned the request away, nothing
    started", which a retry policy answers by sending the run again. ``rate_limit_error`` is the
    *model provider's* limit, hit by a run that had started: it becomes ``DifyRunFailedError``
    (the task's own ``retries`` decide, as for any failed run; never an automatic re-send). The
    400 codes stay ``DifyBadRequestError`` (a retry cannot fix a missing or exhausted provider),
    with a message that names the code and says the run started.
    """
    code = getattr(error, "code", None)
    if endpoint.name not in ("run", "stream") or code not in PIPELINE_ERROR_CODES:
        return error
    said = getattr(error, "server_message", None) or "no message"
    status = error.status_code
    message = (
        f"Dify's model provider failed the run ({code}, HTTP {status}): {said}. The run was started on Dify "
        "and failed there"
    )
    if code == "rate_limit_error":
        failed = DifyRunFailedError(
            message + "; this 429 is the model provider's rate limit, not Dify refusing the request, so it is "
            "not retried as one. Retry later (the task's retries decide) or raise the provider's limit.",
            code=code,
            endpoint=str(endpoint),
            error=said,
        )
        failed.status_code = status
        failed.args = (failed._render(),)
        return failed
    return DifyBadRequestError(
        message + "; retrying cannot fix it: check the app's model provider settings (key, quota, model) in Dify.",
        status_code=int(status or 400),
        endpoint=str(endpoint),
        server_message=getattr(error, "server_message", None),
        code=code,
    )


def error_event_message(
    run_id: str | None,
    code: str | None,
    message: str | None,
    *,
    status: Any = None,
    inputs_hint: str = "Check the inputs against the app's parameters (GET /parameters).",
) -> str:
    """What a stream's ``error`` event means, for the task log (both Dify APIs' trackers).

    The newest Dify validates a streaming run's inputs in its worker and reports a rejection as
    an ``error`` frame with no code and no run id (Part C1), before any run exists; other
    ``error`` events name the run and a code. ``inputs_hint`` says where this API lists the
    app's inputs.
    """
    said = message or "no message"
    if run_id is None and code is None:
        return (
            f"Dify rejected the run before it started: {said}. Dify checks a streaming run's inputs in a "
            "worker and reports a rejection as an error event without a run id"
            f"{f' (status {status})' if status is not None else ''}; the stream was closed at once and the run "
            f"request is not re-sent. {inputs_hint}"
        )
    return f"Dify reported an error during run {run_id or '?'}: {said} ({code or 'no code'})"
