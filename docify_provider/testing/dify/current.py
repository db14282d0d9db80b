"""What the newest Dify server does where its documents say otherwise (Part C), for both APIs.

Only used with ``server_profile="current"`` (``DifyEmulator.current``); kept apart from the
handler so that the documented wire stays readable there. Each piece says which point of
``shared/reference/dify-server-behaviour.md`` Part C it reproduces. The Service API handler uses
every piece and the OpenAPI handler, which extends it, inherits them (worker rejections, ``TYPE``
reasons, re-attach); ``testing/dify_openapi/current.py`` holds only what the OpenAPI adds.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from docify_provider.testing.dify.apps import DifyApp
from docify_provider.testing.dify.streaming import dify_stream, pump
from docify_provider.testing.dify.validation import FileMappingError, validate_inputs
from docify_provider.testing.errors import RequestError
from docify_provider.testing.faults import Fault

if TYPE_CHECKING:
    from docify_provider.testing.scenarios import FileInput

#: Pipeline error codes a blocking run is answered with as an HTTP error (C2); the rest is 400.
PIPELINE_STATUS = {"rate_limit_error": 429}


class WorkerRejection(Exception):
    """A streaming run whose inputs the worker rejected (C1): answered in-band, not with a 400.

    Both emulators raise it (a current server validates every streaming run in its worker, on the
    Service API and the OpenAPI alike) and answer it with :func:`send_worker_error`. No run is
    started: the worker checks the inputs before the graph runs, so no run id exists (none in the
    frame, nothing in the logs) and nothing is billed.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_inputs(
    app: DifyApp, inputs: Any, resolve: Callable[[str], FileInput | None], *, in_worker: bool
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """A run's inputs validated where the server validates them: ``(values, files, rejection)``.

    File mappings are built in the API process before a run goes to a worker, so their errors
    (:class:`FileMappingError`) raise, a synchronous 400, either way. Any other input error raises
    too unless ``in_worker`` (a current server's streaming run, C1): then it is returned as
    ``rejection``, for the worker's ``error`` frame after the 200.
    """
    try:
        values, files = validate_inputs(app, inputs, resolve)
    except FileMappingError:
        raise
    except RequestError as exc:
        if not in_worker:
            raise
        return {}, {}, exc.message
    return values, files, None


def rejection(checked: str | None, fault: Fault | None) -> str | None:
    """Why the server rejects a run's inputs, if it does: the inputs' own error, else a
    ``rejected_input`` fault's message (a check only the server makes)."""
    if checked is not None:
        return checked
    if fault is not None and fault.kind == "rejected_input":
        return str(fault.message)
    return None


def worker_error_frame(message: str) -> str:
    """The worker's error frame: no ``code``, no ``task_id``, no ``workflow_run_id``, status 500.

    Dify's worker publishes it through ``json.dumps`` (spaces, ASCII escapes), not orjson.
    """
    return json.dumps({"event": "error", "message": message, "status": 500})


def send_worker_error(
    write: Callable[[bytes], object],
    message: str,
    *,
    ping_interval: float | None,
    idle_close: float,
    stopping: threading.Event,
) -> str:
    """Write a ping, the worker's error frame, then pings only until the idle close (C1).

    ``error`` is not terminal for the server, so the body stays open: a client that waits for
    the end of the body instead of closing at the error waits ``idle_close`` seconds. Returns
    how the body ended, as :func:`pump` does (``"idle"``; a client that closes first makes the
    next ping's write raise).
    """
    stream = dify_stream(write, ping_interval, stopping)
    stream.ping()
    stream.frame("", worker_error_frame(message))
    nothing: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    return pump(
        stream,
        nothing,
        ping_interval=ping_interval,
        idle_close=idle_close,
        terminal=frozenset(),
        fault=None,
        stopping=stopping,
    )


def upper_case_reasons(event: dict[str, Any]) -> dict[str, Any]:
    """A paused event or body with its reasons' kind under ``TYPE``, as a current server keys it (C4).

    ``event`` is a ``workflow_paused`` event (``data.reasons``) or a blocking paused answer (the
    same place); the run itself keeps the documents' ``type``.
    """
    data = dict(event.get("data") or {})
    data["reasons"] = [{("TYPE" if k == "type" else k): v for k, v in r.items()} for r in data.get("reasons") or []]
    return {**event, "data": data}


def pipeline_error_body(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, error body) of a blocking run that hit a provider or model error (C2)."""
    code = str(event.get("code") or "completion_request_error")
    status = PIPELINE_STATUS.get(code, 400)
    message = str(event.get("message") or "Model invocation failed")
    return status, {"code": code, "message": message, "status": status}


def meta_body() -> dict[str, Any]:
    """``GET /v1/meta`` (C6): the app's tool icons (none in the emulator's graphs)."""
    return {"tool_icons": {}}


def site_body(app: DifyApp) -> dict[str, Any]:
    """``GET /v1/site`` (C6): the app's WebApp settings, as Dify's ``site_fields`` lists them."""
    return {
        "title": app.name,
        "chat_color_theme": None,
        "chat_color_theme_inverted": False,
        "icon_type": "emoji",
        "icon": "🤖",
        "icon_background": "#FFEAD5",
        "icon_url": None,
        "description": app.description,
        "copyright": None,
        "privacy_policy": None,
        "custom_disclaimer": "",
        "default_language": "en-US",
        "show_workflow_steps": True,
        "use_icon_as_answer_icon": False,
    }
