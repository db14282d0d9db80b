"""The app description the OpenAPI serves (B4): ``info``, ``parameters``, ``input_schema``.

``parameters`` is the Service API's ``/parameters`` body (built by the Service-API emulator);
``input_schema`` is the JSON Schema 2020-12 of a run body that Dify derives from the start-node
variables (``_input_schema.py``): chat-family apps add ``query``; ``inputs`` allows no other
properties; file variables are file mappings, file lists arrays of them.
"""

from __future__ import annotations

from typing import Any

from docify_provider.testing.dify.apps import parameters_body
from docify_provider.testing.dify.validation import FILE_TYPES, TRANSFER_METHODS
from docify_provider.testing.dify_openapi.directory import CHAT_MODES, OpenAPIApp

DESCRIBE_FIELDS = ("info", "parameters", "input_schema")
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": list(FILE_TYPES)},
        "transfer_method": {"type": "string", "enum": list(TRANSFER_METHODS)},
        "url": {"type": "string"},
        "upload_file_id": {"type": "string"},
    },
    "required": ["transfer_method"],
}


def _variable_schema(var: dict[str, Any]) -> dict[str, Any]:
    type_ = var["type"]
    schema: dict[str, Any]
    if type_ in ("text-input", "paragraph"):
        schema = {"type": "string"}
        if var.get("max_length"):
            schema["maxLength"] = var["max_length"]
    elif type_ == "select":
        schema = {"type": "string", "enum": list(var.get("options") or [])}
    elif type_ == "number":
        schema = {"type": "number"}
    elif type_ == "file":
        schema = {**_FILE_SCHEMA}
    elif type_ == "file-list":
        schema = {"type": "array", "items": {**_FILE_SCHEMA}}
        if var.get("max_length"):
            schema["maxItems"] = var["max_length"]
    elif type_ == "checkbox":
        schema = {"type": "boolean"}
    else:
        schema = {}
    schema["title"] = var.get("label") or var["variable"]
    if var.get("default") not in (None, ""):
        schema["default"] = var["default"]
    return schema


def input_schema(app: OpenAPIApp) -> dict[str, Any]:
    """The JSON Schema of a run's body for ``app``."""
    inputs: dict[str, Any] = {
        "type": "object",
        "properties": {v["variable"]: _variable_schema(v) for v in app.variables},
        "required": [v["variable"] for v in app.variables if v.get("required")],
        "additionalProperties": False,
    }
    properties: dict[str, Any] = {"inputs": inputs}
    required = ["inputs"]
    if app.mode in CHAT_MODES:
        properties["query"] = {"type": "string", "minLength": 1}
        required.append("query")
    return {"$schema": SCHEMA_DIALECT, "type": "object", "properties": properties, "required": required}


def info(app: OpenAPIApp, *, documented: bool = False) -> dict[str, Any]:
    """``info``; ``is_agent`` is true for agent-chat *and* advanced-chat (Dify's oddity). The
    documents add ``author`` and ``tags``; a current server sends neither (C5)."""
    body: dict[str, Any] = {"id": app.app_id, "name": app.name, "description": app.description, "mode": app.mode}
    if documented:
        body.update(author=app.author_name, tags=app.tag_items())
    body.update(
        updated_at=app.updated_at,
        service_api_enabled=app.service_api_enabled,
        is_agent=app.mode in ("agent-chat", "advanced-chat"),
    )
    return body


def app_row(app: OpenAPIApp, workspace_name: str, *, documented: bool = False) -> dict[str, Any]:
    """One ``GET /apps`` row; the documents' rows add ``tags`` and ``created_by_name`` (C5: not on
    a current server, whose rows are ``id, name, description, mode, updated_at, workspace_id,
    workspace_name``)."""
    row: dict[str, Any] = {"id": app.app_id, "name": app.name, "description": app.description, "mode": app.mode}
    if documented:
        row["tags"] = app.tag_items()
    row.update(updated_at=app.updated_at, workspace_id=app.workspace_id, workspace_name=workspace_name)
    if documented:
        row["created_by_name"] = app.created_by_name
    return row


def describe(
    app: OpenAPIApp, fields: tuple[str, ...], system_parameters: dict[str, Any], *, documented: bool = False
) -> dict[str, Any]:
    """The describe body with the requested blocks (all when ``fields`` is empty)."""
    wanted = fields or DESCRIBE_FIELDS
    body: dict[str, Any] = {}
    if "info" in wanted:
        body["info"] = info(app, documented=documented)
    if "parameters" in wanted:
        body["parameters"] = parameters_body(app, system_parameters)
    if "input_schema" in wanted:
        body["input_schema"] = input_schema(app)
    return body
