"""What is specific about the user-scoped OpenAPI's wire, sans-IO: operations per path generation,
how the generation is detected, and the run request.

Three generations of paths exist and self-hosted servers run each of them (server-behaviour
reference, part B):

- ``legacy`` (``dify-user-openapi.md``): ``POST /apps/{id}/run``, ``GET /apps/{id}/describe``,
  ``/apps/{id}/tasks/{tid}/stop``, ``/apps/{id}/form/human_input/{token}`` (GET and POST);
- ``action`` (Dify PR #38367): ``POST /apps/{id}:run``, ``GET /apps/{id}``, ``/tasks/{tid}:stop``,
  ``/apps/{id}/human-input-forms/{token}`` and ``...:submit``;
- ``per-mode`` (PR #42487): ``action`` with one run route per app mode
  (``/apps/{id}/workflow:run``, ``/chat:run``, ``/advanced-chat:run``, ``/completion:run``); the
  mode-agnostic ``/apps/{id}:run`` stays as a deprecated route.

``GenerationProbe`` finds the generation with reads only: ``GET /_version`` (its
``X-Dify-Catalog`` header is on every response of a per-mode server), then a describe read
(``GET /apps/{id}``; a 404 there and a 200 from ``/apps/{id}/describe`` is a legacy server). A
run is never sent to find out. Runs are ``repeatable=False``: never re-sent once they may have
reached Dify.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from docify_provider._core.endpoints import Endpoint

LEGACY, ACTION, PER_MODE = "legacy", "action", "per-mode"
GENERATIONS = (LEGACY, ACTION, PER_MODE)

#: App modes whose run takes a ``query`` (required, non-blank).
CHAT_MODES = frozenset({"chat", "advanced-chat", "agent-chat"})
#: Modes the events route serves (re-attach); others answer 422 mode_not_supported_for_event_reconnect.
EVENT_MODES = frozenset({"workflow", "advanced-chat"})
#: The response header a per-mode server sets on every ``/openapi/v1`` answer (the catalog's sha256).
CATALOG_HEADER = "x-dify-catalog"

# --- the same on every generation ----------------------------------------------------------------

HEALTH = Endpoint("health", "GET", "/_health", repeatable=True)
VERSION = Endpoint("version", "GET", "/_version", repeatable=True)
ACCOUNT = Endpoint("account", "GET", "/account", repeatable=True)
SESSIONS = Endpoint("sessions", "GET", "/account/sessions", repeatable=True)
#: Revoking twice answers 404 the second time at worst: safe to repeat.
REVOKE_SELF = Endpoint("revoke_session", "DELETE", "/account/sessions/self", repeatable=True)
REVOKE_SESSION = Endpoint("revoke_session", "DELETE", "/account/sessions/{session_id}", repeatable=True, lookup=True)
WORKSPACES = Endpoint("workspaces", "GET", "/workspaces", repeatable=True)
WORKSPACE = Endpoint("workspace", "GET", "/workspaces/{workspace_id}", repeatable=True, lookup=True)
APPS = Endpoint("apps", "GET", "/apps", repeatable=True)
PERMITTED_APPS = Endpoint("permitted_apps", "GET", "/permitted-external-apps", repeatable=True)
#: Re-attach to a run (the path's task id is the workflow_run_id); kept its path in every generation.
EVENTS = Endpoint(
    "events", "GET", "/apps/{app_id}/tasks/{task_id}/events", repeatable=True, streaming=True, lookup=True
)
DEVICE_CODE = Endpoint("device_code", "POST", "/oauth/device/code", repeatable=True)
#: The token is handed out once (the server consumes it on the answer): a poll whose answer was
#: lost is not re-sent, the next poll of the state machine is a new decision.
DEVICE_TOKEN = Endpoint(
    "device_token",
    "POST",
    "/oauth/device/token",
    repeatable=False,
    effect="the token may have been handed out (and is then spent): start a new login",
)
DEVICE_LOOKUP = Endpoint("device_lookup", "GET", "/oauth/device/lookup", repeatable=True)

# --- per generation ------------------------------------------------------------------------------

DESCRIBE = {
    LEGACY: Endpoint("describe", "GET", "/apps/{app_id}/describe", repeatable=True, lookup=True),
    ACTION: Endpoint("describe", "GET", "/apps/{app_id}", repeatable=True, lookup=True),
    PER_MODE: Endpoint("describe", "GET", "/apps/{app_id}", repeatable=True, lookup=True),
}
#: A run costs money and has no idempotency key: never re-sent once it may have reached Dify.
RUN = {
    LEGACY: Endpoint("run", "POST", "/apps/{app_id}/run", repeatable=False, streaming=True),
    ACTION: Endpoint("run", "POST", "/apps/{app_id}:run", repeatable=False, streaming=True),
}
RUN_BY_MODE = {
    mode: Endpoint("run", "POST", f"/apps/{{app_id}}/{mode}:run", repeatable=False, streaming=True)
    for mode in ("workflow", "chat", "advanced-chat", "completion")
}
#: Dify answers success to any stop (unknown or finished task): safe to repeat.
STOP = {
    LEGACY: Endpoint("stop", "POST", "/apps/{app_id}/tasks/{task_id}/stop", repeatable=True),
    ACTION: Endpoint("stop", "POST", "/apps/{app_id}/tasks/{task_id}:stop", repeatable=True),
    PER_MODE: Endpoint("stop", "POST", "/apps/{app_id}/tasks/{task_id}:stop", repeatable=True),
}
FORM = {
    LEGACY: Endpoint("form", "GET", "/apps/{app_id}/form/human_input/{form_token}", repeatable=True, lookup=True),
    ACTION: Endpoint("form", "GET", "/apps/{app_id}/human-input-forms/{form_token}", repeatable=True, lookup=True),
    PER_MODE: Endpoint("form", "GET", "/apps/{app_id}/human-input-forms/{form_token}", repeatable=True, lookup=True),
}
#: A submit resumes the run; a second one would answer "already submitted": not re-sent.
_SUBMITTED = "the form may be answered and its run resumed (read the form: 412 means it was)"
SUBMIT = {
    LEGACY: Endpoint(
        "submit_form", "POST", "/apps/{app_id}/form/human_input/{form_token}", repeatable=False, effect=_SUBMITTED
    ),
    ACTION: Endpoint(
        "submit_form",
        "POST",
        "/apps/{app_id}/human-input-forms/{form_token}:submit",
        repeatable=False,
        effect=_SUBMITTED,
    ),
    PER_MODE: Endpoint(
        "submit_form",
        "POST",
        "/apps/{app_id}/human-input-forms/{form_token}:submit",
        repeatable=False,
        effect=_SUBMITTED,
    ),
}


def describe_endpoint(generation: str, app_id: str) -> Endpoint:
    return DESCRIBE[generation].format(app_id=app_id)


def run_endpoint(generation: str, app_id: str, mode: str | None) -> Endpoint:
    """The run route: per mode on a per-mode server (the deprecated ``:run`` for a mode without one)."""
    by_mode = RUN_BY_MODE.get(mode or "") if generation == PER_MODE else None
    return (by_mode or RUN[ACTION if generation == PER_MODE else generation]).format(app_id=app_id)


def stop_endpoint(generation: str, app_id: str, task_id: str) -> Endpoint:
    return STOP[generation].format(app_id=app_id, task_id=task_id)


def form_endpoint(generation: str, app_id: str, form_token: str) -> Endpoint:
    return FORM[generation].format(app_id=app_id, form_token=form_token)


def submit_endpoint(generation: str, app_id: str, form_token: str) -> Endpoint:
    return SUBMIT[generation].format(app_id=app_id, form_token=form_token)


def events_endpoint(app_id: str, workflow_run_id: str) -> Endpoint:
    return EVENTS.format(app_id=app_id, task_id=workflow_run_id)


def events_params(*, include_state_snapshot: bool, continue_on_pause: bool) -> dict[str, str]:
    return {
        "include_state_snapshot": "true" if include_state_snapshot else "false",
        "continue_on_pause": "true" if continue_on_pause else "false",
    }


def describe_params(generation: str, fields: tuple[str, ...] = (), workspace_id: str | None = None) -> dict[str, str]:
    """``?fields=info,parameters,input_schema`` (comma-separated; omitted means all blocks)."""
    params: dict[str, str] = {}
    if fields:
        params["fields"] = ",".join(fields)
    if workspace_id:
        params["workspace_id"] = workspace_id
    return params


# --- generation detection (reads only) -----------------------------------------------------------


@dataclass
class GenerationProbe:
    """Sans-IO detection of a server's path generation, driven by a client's reads.

    Steps: ``version_request()`` -> ``on_version(status, headers, body)``; while ``generation``
    is None, ``describe_request(app_id)`` -> ``on_describe(status)``. A per-mode server is known
    from ``/_version`` alone (its ``X-Dify-Catalog`` header); otherwise the current describe path
    is read first and the legacy one after a 404. Both 404: the app is unknown, the generation
    stays undecided (``on_describe`` returns False) and the next app-scoped call probes again.
    """

    generation: str | None = None
    version: str | None = None
    edition: str | None = None
    #: The describe path the next ``describe_request`` reads (current first, then legacy).
    candidate: str = ACTION
    #: The answer of a successful describe read, kept so the probe costs no second read.
    described: Any = None

    def version_request(self) -> Endpoint:
        return VERSION

    def on_version(self, status: int, headers: Mapping[str, str], body: Any) -> None:
        if 200 <= status < 300 and isinstance(body, Mapping):
            self.version = str(body.get("version") or "") or None
            self.edition = str(body.get("edition") or "") or None
        if status < 500 and any(k.lower() == CATALOG_HEADER for k in headers):
            self.generation = PER_MODE

    def describe_request(self, app_id: str) -> Endpoint:
        return describe_endpoint(self.candidate, app_id)

    def on_describe(self, status: int, headers: Mapping[str, str], body: Any = None) -> bool:
        """Record a describe read's answer; True when the probe is finished (decided or app unknown)."""
        if 200 <= status < 300:
            catalog = any(k.lower() == CATALOG_HEADER for k in headers)
            self.generation = PER_MODE if (catalog and self.candidate != LEGACY) else self.candidate
            self.described = body
            return True
        if status == 404 and self.candidate == ACTION:
            self.candidate = LEGACY
            return False
        return True  # another error, or 404 on both paths: the caller raises it


# --- the run request -----------------------------------------------------------------------------


def run_body(
    generation: str,
    mode: str | None,
    inputs: Mapping[str, Any],
    *,
    query: str | None = None,
    conversation_id: str | None = None,
    workflow_id: str | None = None,
    workspace_id: str | None = None,
    files: list[Any] | None = None,
) -> dict[str, Any]:
    """The run body for ``mode``: ``query``/``conversation_id`` only for chat apps (the per-mode
    payloads forbid extra fields; older servers answer 422 ``query_not_supported_for_workflow``)."""
    body: dict[str, Any] = {"inputs": dict(inputs)}
    if mode in CHAT_MODES:
        body["query"] = query
        if conversation_id:
            body["conversation_id"] = conversation_id
    if workflow_id:
        body["workflow_id"] = workflow_id
    if workspace_id:
        body["workspace_id"] = workspace_id
    if files:
        body["attachments" if generation == PER_MODE else "files"] = files
    return body


def multipart_fields(body: Mapping[str, Any]) -> dict[str, str]:
    """A run body as multipart form fields beside its ``files[<var>]`` parts: objects as JSON text."""
    out: dict[str, str] = {}
    for name, value in body.items():
        if value is None:
            continue
        out[name] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return out


def file_part_name(variable: str) -> str:
    """The multipart part a file for input ``variable`` travels in (``files[<var>]``, B5)."""
    return f"files[{variable}]"


__all__ = [
    "ACCOUNT",
    "ACTION",
    "APPS",
    "CHAT_MODES",
    "DESCRIBE",
    "DEVICE_CODE",
    "DEVICE_LOOKUP",
    "DEVICE_TOKEN",
    "EVENTS",
    "EVENT_MODES",
    "FORM",
    "GENERATIONS",
    "LEGACY",
    "PERMITTED_APPS",
    "PER_MODE",
    "REVOKE_SELF",
    "REVOKE_SESSION",
    "RUN",
    "RUN_BY_MODE",
    "SESSIONS",
    "STOP",
    "SUBMIT",
    "VERSION",
    "WORKSPACES",
    "Endpoint",
    "GenerationProbe",
    "run_body",
]
