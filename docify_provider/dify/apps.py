"""What ``GET /info`` and ``GET /parameters`` say about the app a key runs: its name and mode, its
start-node variables and the server's upload limits.

Separate from the run and event models (``models``): these describe the app before any run, and
only input checking (``inputs``) and the hooks read them. Re-exported by ``models``, where callers
have always imported them.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from docify_provider.dify.errors import DifyProtocolError
from docify_provider.dify.parsing import as_list, json_object, opt_float, opt_int, opt_str

__all__ = ["VARIABLE_TYPES", "AppInfo", "AppParameters", "InputVariable"]


@dataclass(frozen=True)
class AppInfo:
    """``GET /info``: the app the key is bound to."""

    name: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    mode: str | None = None
    author_name: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: Any) -> AppInfo:
        data = json_object(data, "the app info")
        return cls(
            name=str(data.get("name") or ""),
            description=str(data.get("description") or ""),
            tags=[str(t) for t in as_list(data.get("tags"))],
            mode=opt_str(data.get("mode")),
            author_name=opt_str(data.get("author_name")),
            raw=data,
        )


#: Variable types of a workflow's start node.
VARIABLE_TYPES = frozenset(
    {
        "text-input",
        "paragraph",
        "select",
        "number",
        "checkbox",
        "file",
        "file-list",
        "json_object",
        "external_data_tool",
    }
)


@dataclass(frozen=True)
class InputVariable:
    """One start-node variable of ``/parameters``' ``user_input_form``."""

    type: str
    variable: str
    label: str = ""
    required: bool = False
    max_length: int | None = None
    options: list[str] = field(default_factory=list)
    allowed_file_types: list[str] = field(default_factory=list)
    allowed_file_extensions: list[str] = field(default_factory=list)
    allowed_file_upload_methods: list[str] = field(default_factory=list)
    default: Any = None
    hide: bool = False
    json_schema: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def takes_files(self) -> bool:
        return self.type in ("file", "file-list")

    @classmethod
    def from_api(cls, item: Any) -> InputVariable:
        """An item of the old structure ``{type: {...}}`` or a flat variable dict with ``type``."""
        item = json_object(item, "a user_input_form item")
        if len(item) == 1 and isinstance(next(iter(item.values())), dict):
            type_, body = next(iter(item.items()))
        else:
            type_, body = item.get("type"), item
        if not body.get("variable"):
            raise DifyProtocolError(f"user_input_form item without a variable name: {item!r:.200}")
        schema = body.get("json_schema")
        if isinstance(schema, str) and schema.strip():
            with contextlib.suppress(ValueError):
                schema = json.loads(schema)
        return cls(
            type=str(body.get("type") or type_ or ""),
            variable=str(body["variable"]),
            label=str(body.get("label") or body["variable"]),
            required=bool(body.get("required")),
            max_length=opt_int(body.get("max_length")) or None,
            options=[str(o) for o in as_list(body.get("options"))],
            allowed_file_types=[str(t) for t in as_list(body.get("allowed_file_types"))],
            allowed_file_extensions=[str(e).lower() for e in as_list(body.get("allowed_file_extensions"))],
            allowed_file_upload_methods=[str(m) for m in as_list(body.get("allowed_file_upload_methods"))],
            default=body.get("default"),
            hide=bool(body.get("hide")),
            json_schema=schema,
            raw=body,
        )


@dataclass(frozen=True)
class AppParameters:
    """``GET /parameters``: the start-node variables and the server's file size limits (MB)."""

    user_input_form: list[InputVariable] = field(default_factory=list)
    file_upload: dict[str, Any] = field(default_factory=dict)
    file_size_limit: float | None = None
    image_file_size_limit: float | None = None
    audio_file_size_limit: float | None = None
    video_file_size_limit: float | None = None
    workflow_file_upload_limit: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def variable(self, name: str) -> InputVariable | None:
        return next((v for v in self.user_input_form if v.variable == name), None)

    def size_limit_mb(self, file_type: str) -> float | None:
        """The limit for a Dify file type (document, image, audio, video); documents use the general one."""
        specific = {
            "image": self.image_file_size_limit,
            "audio": self.audio_file_size_limit,
            "video": self.video_file_size_limit,
        }.get(file_type)
        return specific if specific is not None else self.file_size_limit

    @classmethod
    def from_api(cls, data: Any) -> AppParameters:
        data = json_object(data, "the app parameters")
        system = data.get("system_parameters") if isinstance(data.get("system_parameters"), dict) else {}
        return cls(
            user_input_form=[InputVariable.from_api(item) for item in as_list(data.get("user_input_form"))],
            file_upload=data.get("file_upload") if isinstance(data.get("file_upload"), dict) else {},
            file_size_limit=opt_float(system.get("file_size_limit")),
            image_file_size_limit=opt_float(system.get("image_file_size_limit")),
            audio_file_size_limit=opt_float(system.get("audio_file_size_limit")),
            video_file_size_limit=opt_float(system.get("video_file_size_limit")),
            workflow_file_upload_limit=opt_int(system.get("workflow_file_upload_limit")),
            raw=data,
        )
