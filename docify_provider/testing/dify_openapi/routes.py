"""The URL side of the OpenAPI emulator: the path table of both path generations, the catalog
probe, the ordering behind the difyctl version gate, and the paging parameters and envelope of
list answers.

Pure functions of the path, the query and the emulator's path generation (``legacy``), kept apart
from ``handler`` (which authenticates, checks bodies and answers) so that each reads on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from docify_provider.testing.dify_openapi.errors import invalid_request

__all__ = ["PREFIX", "RUN_ROUTES", "Route", "catalog", "envelope", "is_uuid", "match", "page_of", "version_key"]

PREFIX = "/openapi/v1"
#: Route mode segment of ``/apps/{id}/<mode>:run`` -> app mode.
RUN_ROUTES = {"workflow": "workflow", "chat": "chat", "advanced-chat": "advanced-chat", "completion": "completion"}
#: (fault endpoint, operation, methods, path arguments) of a path.
Route = tuple[str, str, set[str], tuple[str, ...]]


def match(path: str, *, legacy: bool) -> Route | None:
    """(fault endpoint, operation, methods, path arguments) of ``path``, None for a 404."""
    if not path.startswith(PREFIX + "/"):
        return None
    parts = path[len(PREFIX) + 1 :].split("/")
    n = len(parts)
    fixed = {
        "_health": ("probe", "health", {"GET"}),
        "_version": ("probe", "version", {"GET"}),
        "_catalog": ("probe", "catalog", {"GET"}),
        "account": ("account", "account", {"GET"}),
        "account/sessions": ("sessions", "sessions", {"GET"}),
        "account/sessions/self": ("sessions", "revoke_self", {"DELETE"}),
        "workspaces": ("workspaces", "workspaces", {"GET"}),
        "apps": ("apps", "apps", {"GET"}),
        "permitted-external-apps": ("apps", "external_apps", {"GET"}),
        "oauth/device/code": ("device", "device_code", {"POST"}),
        "oauth/device/token": ("device", "device_token", {"POST"}),
        "oauth/device/lookup": ("device", "device_lookup", {"GET"}),
        "oauth/device/approve": ("device", "device_approve", {"POST"}),
        "oauth/device/deny": ("device", "device_deny", {"POST"}),
    }
    joined = "/".join(parts)
    if joined in fixed:
        endpoint, op, methods = fixed[joined]
        return endpoint, op, methods, ()
    if n == 3 and parts[:2] == ["account", "sessions"]:
        return "sessions", "revoke", {"DELETE"}, (parts[2],)
    if n == 2 and parts[0] == "workspaces" and parts[1].endswith(":switch") and not legacy:
        return "workspaces", "switch", {"POST"}, (parts[1][: -len(":switch")],)
    if n == 2 and parts[0] == "workspaces" and ":" not in parts[1]:
        return "workspaces", "workspace", {"GET"}, (parts[1],)
    if parts[0] != "apps" or n < 2:
        return None
    if n == 5 and parts[2] == "tasks" and parts[4] == "events":
        return "events", "events", {"GET"}, (parts[1], parts[3])
    return _legacy_app_route(parts) if legacy else _current_app_route(parts)


def _legacy_app_route(parts: list[str]) -> Route | None:
    n = len(parts)
    if n == 3 and parts[2] == "run":
        return "stream", "run", {"POST"}, (parts[1], "")
    if n == 3 and parts[2] == "describe":
        return "describe", "describe", {"GET"}, (parts[1],)
    if n == 5 and parts[2] == "tasks" and parts[4] == "stop":
        return "stop", "stop", {"POST"}, (parts[1], parts[3])
    if n == 5 and parts[2:4] == ["form", "human_input"]:
        return "form", "form", {"GET", "POST"}, (parts[1], parts[4])  # POST: form_submit (_route)
    return None


def _current_app_route(parts: list[str]) -> Route | None:
    n = len(parts)
    if n == 2 and parts[1].endswith(":run"):
        return "stream", "run", {"POST"}, (parts[1][: -len(":run")], "")
    if n == 2 and ":" not in parts[1]:
        return "describe", "describe", {"GET"}, (parts[1],)
    if n == 3 and parts[2].endswith(":run") and parts[2][: -len(":run")] in RUN_ROUTES:
        return "stream", "run", {"POST"}, (parts[1], RUN_ROUTES[parts[2][: -len(":run")]])
    if n == 4 and parts[2] == "tasks" and parts[3].endswith(":stop"):
        return "stop", "stop", {"POST"}, (parts[1], parts[3][: -len(":stop")])
    if n == 4 and parts[2] == "human-input-forms":
        token, _, action = parts[3].partition(":")
        if action == "submit":
            return "form", "form_submit", {"POST"}, (parts[1], token)  # endpoint form_submit (_route)
        if not action:
            return "form", "form", {"GET"}, (parts[1], token)
    return None


def catalog(version: str, *, legacy: bool) -> dict[str, Any]:
    """The ``_catalog`` probe's answer (its digest is the ``X-Dify-Catalog`` header of every answer)."""
    ops = [
        ("get.console_app", "GET", "/apps"),
        ("describe.console_app", "GET", "/apps/{app_id}/describe" if legacy else "/apps/{app_id}"),
        ("run.events", "GET", "/apps/{app_id}/tasks/{task_id}/events"),
        (
            "console_app.stop",
            "POST",
            "/apps/{app_id}/tasks/{task_id}/stop" if legacy else "/apps/{app_id}/tasks/{task_id}:stop",
        ),
    ]
    if legacy:
        ops.append(("console_app.run", "POST", "/apps/{app_id}/run"))
        ops.append(("describe.run.form", "GET", "/apps/{app_id}/form/human_input/{form_token}"))
        ops.append(("run.form.submit", "POST", "/apps/{app_id}/form/human_input/{form_token}"))
    else:
        ops.extend((f"console_app.{m.replace('-', '_')}.run", "POST", f"/apps/{{app_id}}/{m}:run") for m in RUN_ROUTES)
        ops.append(("describe.run.form", "GET", "/apps/{app_id}/human-input-forms/{form_token}"))
        ops.append(("submit.run.form", "POST", "/apps/{app_id}/human-input-forms/{form_token}:submit"))
    return {"version": version, "operations": [{"op": o, "method": m, "path": p} for o, m, p in ops]}


def version_key(version: str) -> tuple[tuple[int, ...], int, str]:
    """Sort key of a semantic version: ``0.2.0-alpha`` < ``0.2.0`` < ``0.10.0``."""
    core, _, pre = version.partition("-")
    numbers = tuple(int(n) if n.isdigit() else 0 for n in core.split("."))
    return numbers, 0 if pre else 1, pre


def is_uuid(text: str) -> bool:
    """Whether ``text`` parses as a UUID (ids in queries are UUIDs)."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def page_of(query: Mapping[str, str], max_limit: int, default_limit: int = 20) -> tuple[int, int]:
    """``page`` and ``limit`` of a list request; 422 with pydantic-style details when out of range."""
    values = []
    for name, default, high in (("page", 1, 99999), ("limit", default_limit, max_limit)):
        raw = query.get(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise invalid_request(("int_parsing", [name], "Input should be a valid integer")) from None
        if not 1 <= value <= high:
            raise invalid_request(
                (
                    "less_than_equal" if value > high else "greater_than_equal",
                    [name],
                    f"{name} must be between 1 and {high}",
                )
            )
        values.append(value)
    return values[0], values[1]


def envelope(items: list[Any], page: int, limit: int) -> dict[str, Any]:
    """One page of ``items`` in the envelope of list answers."""
    chunk = items[(page - 1) * limit : page * limit]
    return {"page": page, "limit": limit, "total": len(items), "has_more": page * limit < len(items), "data": chunk}
