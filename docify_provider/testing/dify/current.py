"""What the newest Dify server does on the Service API where its documents say otherwise (Part C).

Only used with ``server_profile="current"`` (``DifyEmulator.current``); kept apart from the
handler so that the documented wire stays readable there. Each piece says which point of
``shared/reference/dify-server-behaviour.md`` Part C it reproduces.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import Any

from docify_provider.testing.dify.apps import DifyApp
from docify_provider.testing.dify.streaming import dify_stream, pump

#: Pipeline error codes a blocking run is answered with as an HTTP error (C2); the rest is 400.
PIPELINE_STATUS = {"rate_limit_error": 429}


class WorkerRejection(Exception):
    """A streaming run whose inputs the worker rejected (C1): answered in-band, not with a 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
    how the body ended, as :func:`pump` does.
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
