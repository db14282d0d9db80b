"""Typed, immutable views of what the Dify Workflow Service API sends.

Each model keeps the payload it was built from in ``raw`` (nothing the server returned is
dropped); times are aware UTC datetimes (Dify sends epoch seconds). Parsers are lenient about
fields Dify added or renamed across versions and strict only about what the client relies on.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urljoin, urlsplit

import pendulum

from docify_provider.dify.errors import DifyProtocolError
from docify_provider.dify.protocol import ENDED_STATUSES, FAILED_STATUSES

__all__ = [
    "AppInfo",
    "AppParameters",
    "FormRequest",
    "InputVariable",
    "NodeView",
    "OutputFile",
    "UploadedFile",
    "WorkflowEvent",
    "WorkflowLog",
    "WorkflowRun",
    "epoch_to_datetime",
    "form_of_events",
    "form_of_pause",
    "human_input_reasons",
    "reason_kind",
    "run_from_record",
    "run_record",
]

#: Events that end a stream (Dify's default terminal set).
TERMINAL_EVENTS = frozenset({"workflow_finished", "workflow_paused"})
#: Event names documented for workflow apps; others are kept and logged at debug.
KNOWN_EVENTS = frozenset(
    {
        "ping",
        "error",
        "workflow_started",
        "workflow_finished",
        "workflow_paused",
        "node_started",
        "node_finished",
        "node_retry",
        "iteration_started",
        "iteration_next",
        "iteration_completed",
        "loop_started",
        "loop_next",
        "loop_completed",
        "parallel_branch_started",
        "parallel_branch_finished",
        "text_chunk",
        "text_replace",
        "tts_message",
        "tts_message_end",
        "agent_log",
        "human_input_required",
        "human_input_form_filled",
        "human_input_form_timeout",
    }
)
FILE_IDENTITY = "__dify__file__"


def epoch_to_datetime(value: Any) -> datetime | None:
    """Epoch seconds (or an ISO 8601 string) -> aware UTC datetime (a ``pendulum.DateTime``)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        if isinstance(value, str) and not value.replace(".", "", 1).isdigit():
            utc = datetime.fromisoformat(value.replace("Z", "+00:00"))
            utc = (utc if utc.tzinfo else utc.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
        else:
            utc = datetime.fromtimestamp(float(value), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return pendulum.DateTime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=pendulum.UTC
    )


def _mapping(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise DifyProtocolError(f"Expected a JSON object for {what}, got {type(payload).__name__}")
    return payload


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _task_id(task_id: Any, run_id: Any) -> str | None:
    """A task id, or None when it is the run id.

    Re-attaching to a run that has already finished, the newest Dify sends one
    ``workflow_finished`` whose ``task_id`` is the run id (Part C3). Kept as the task id it
    would replace the real one, and a later stop would name a task that does not exist.
    """
    if task_id is None or (run_id is not None and str(task_id) == str(run_id)):
        return None
    return str(task_id)


def _without_run_id_task(raw: dict[str, Any], run_id: Any) -> dict[str, Any]:
    """``raw`` with its ``task_id`` cleared (None) when that is the run id (see :func:`_task_id`).

    ``raw`` travels on: into a ``WorkflowRun`` (an operator's XCom ``body``) and to code that
    reads the task id from the payload (the OpenAPI's chat runs record it for a stop). Cleared
    here, where the frame is read, no reader can take the run id for a task id.
    """
    if raw.get("task_id") is not None and _task_id(raw.get("task_id"), run_id) is None:
        return {**raw, "task_id": None}
    return raw


def reason_kind(reason: Mapping[str, Any]) -> str | None:
    """The kind of a ``workflow_paused`` reason: the documents key it ``type``, the newest
    Dify ``TYPE`` (Part C4), so both are read."""
    kind = reason.get("type", reason.get("TYPE"))
    return None if kind is None else str(kind)


def human_input_reasons(reasons: Any) -> list[dict[str, Any]]:
    """The reasons of a pause that are human-input forms (``type``/``TYPE`` human_input_required,
    or no kind at all, as older servers sent), in order."""
    return [r for r in _list(reasons) if isinstance(r, dict) and reason_kind(r) in (None, "human_input_required")]


# --- the app -------------------------------------------------------------------------------------


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
        data = _mapping(data, "the app info")
        return cls(
            name=str(data.get("name") or ""),
            description=str(data.get("description") or ""),
            tags=[str(t) for t in _list(data.get("tags"))],
            mode=_str(data.get("mode")),
            author_name=_str(data.get("author_name")),
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
        item = _mapping(item, "a user_input_form item")
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
            max_length=_int(body.get("max_length")) or None,
            options=[str(o) for o in _list(body.get("options"))],
            allowed_file_types=[str(t) for t in _list(body.get("allowed_file_types"))],
            allowed_file_extensions=[str(e).lower() for e in _list(body.get("allowed_file_extensions"))],
            allowed_file_upload_methods=[str(m) for m in _list(body.get("allowed_file_upload_methods"))],
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
        data = _mapping(data, "the app parameters")
        system = data.get("system_parameters") if isinstance(data.get("system_parameters"), dict) else {}
        return cls(
            user_input_form=[InputVariable.from_api(item) for item in _list(data.get("user_input_form"))],
            file_upload=data.get("file_upload") if isinstance(data.get("file_upload"), dict) else {},
            file_size_limit=_float(system.get("file_size_limit")),
            image_file_size_limit=_float(system.get("image_file_size_limit")),
            audio_file_size_limit=_float(system.get("audio_file_size_limit")),
            video_file_size_limit=_float(system.get("video_file_size_limit")),
            workflow_file_upload_limit=_int(system.get("workflow_file_upload_limit")),
            raw=data,
        )


# --- files ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedFile:
    """``POST /files/upload``'s answer: use it as a file input with ``as_input(type)``."""

    id: str
    name: str
    size: int | None = None
    extension: str | None = None
    mime_type: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def as_input(self, type: str | None = None) -> dict[str, Any]:
        """The file as a run input: ``{"transfer_method": "local_file", "upload_file_id": id, "type": ...}``."""
        mapping: dict[str, Any] = {"transfer_method": "local_file", "upload_file_id": self.id}
        mapping["type"] = type or file_type_for_extension(self.extension or self.name)
        return mapping

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the upload operator's XCom); ``from_api(as_dict())`` rebuilds it."""
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "extension": self.extension,
            "mime_type": self.mime_type,
            "created_by": self.created_by,
            "created_at": int(self.created_at.timestamp()) if self.created_at else None,
        }

    @classmethod
    def from_api(cls, data: Any) -> UploadedFile:
        data = _mapping(data, "the upload answer")
        if not data.get("id"):
            raise DifyProtocolError("Upload answer without a file id")
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            size=_int(data.get("size")),
            extension=_str(data.get("extension")),
            mime_type=_str(data.get("mime_type")),
            created_by=_str(data.get("created_by")),
            created_at=epoch_to_datetime(data.get("created_at")),
            raw=data,
        )


#: Dify's file types by extension (``custom`` for anything else).
FILE_TYPE_EXTENSIONS: dict[str, frozenset[str]] = {
    "document": frozenset(
        [
            "txt",
            "md",
            "markdown",
            "mdx",
            "pdf",
            "html",
            "htm",
            "xlsx",
            "xls",
            "docx",
            "csv",
            "eml",
            "msg",
            "pptx",
            "ppt",
            "xml",
            "epub",
            "vtt",
            "properties",
        ]
    ),
    "image": frozenset(["jpg", "jpeg", "png", "gif", "webp", "svg"]),
    "audio": frozenset(["mp3", "m4a", "wav", "amr", "mpga"]),
    "video": frozenset(["mp4", "mov", "mpeg", "webm"]),
}


def file_type_for_extension(name_or_ext: str | None) -> str:
    """Dify's file type (document, image, audio, video, custom) of a name or an extension."""
    text = (name_or_ext or "").lower()
    ext = text.rsplit(".", 1)[-1] if "." in text else text
    return next((t for t, exts in FILE_TYPE_EXTENSIONS.items() if ext in exts), "custom")


@dataclass(frozen=True)
class OutputFile:
    """A Dify file object found in a run's outputs; ``file_url`` is absolute (for ``download``)."""

    file_name: str
    file_url: str | None
    file_size: int | None = None
    mime_type: str | None = None
    extension: str | None = None
    type: str | None = None
    id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @staticmethod
    def is_file_object(value: Any) -> bool:
        return isinstance(value, dict) and (
            value.get("dify_model_identity") == FILE_IDENTITY
            or ("transfer_method" in value and ("url" in value or "remote_url" in value) and "filename" in value)
        )

    @classmethod
    def from_api(cls, data: dict[str, Any], *, base_url: str | None = None) -> OutputFile:
        url = data.get("url") or data.get("remote_url")
        if isinstance(url, str) and url and base_url and not urlsplit(url).scheme:
            # Dify without FILES_URL sends "/files/tools/<id>.csv?...": relative to the server's origin.
            parts = urlsplit(base_url)
            url = urljoin(f"{parts.scheme}://{parts.netloc}/", url)
        return cls(
            file_name=str(data.get("filename") or data.get("name") or data.get("id") or "file"),
            file_url=url if isinstance(url, str) and url else None,
            file_size=_int(data.get("size")),
            mime_type=_str(data.get("mime_type")),
            extension=_str(data.get("extension")),
            type=_str(data.get("type")),
            id=_str(data.get("id") or data.get("related_id")),
            raw=data,
        )


def find_output_files(value: Any, *, base_url: str | None = None) -> list[OutputFile]:
    """Every Dify file object in ``value`` (outputs, nested in dicts and lists), each once by id."""
    found: list[OutputFile] = []
    seen: set[str] = set()

    def walk(item: Any, depth: int) -> Iterator[dict[str, Any]]:
        if depth > 20:
            return
        if OutputFile.is_file_object(item):
            yield item
        elif isinstance(item, dict):
            for child in item.values():
                yield from walk(child, depth + 1)
        elif isinstance(item, list):
            for child in item:
                yield from walk(child, depth + 1)

    for obj in walk(value, 0):
        out = OutputFile.from_api(obj, base_url=base_url)
        key = out.id or out.file_url or out.file_name
        if key not in seen:
            seen.add(key)
            found.append(out)
    return found


# --- runs ----------------------------------------------------------------------------------------


def empty_usage() -> dict[str, Any]:
    return {"total_tokens": 0, "total_price": None, "currency": None}


def add_usage(usage: dict[str, Any], metadata: Any) -> None:
    """Add one ``node_finished.execution_metadata`` to ``usage`` (in place)."""
    if not isinstance(metadata, dict):
        return
    tokens = _int(metadata.get("total_tokens"))
    if tokens:
        usage["total_tokens"] = int(usage.get("total_tokens") or 0) + tokens
    price = metadata.get("total_price")
    if price not in (None, ""):
        try:
            total = Decimal(str(usage.get("total_price") or 0)) + Decimal(str(price))
        except InvalidOperation:
            return
        usage["total_price"] = float(total)
        if metadata.get("currency"):
            usage["currency"] = str(metadata["currency"])


@dataclass(frozen=True)
class WorkflowRun:
    """A workflow run as a blocking answer, the run detail or a ``workflow_finished`` event shows it."""

    workflow_run_id: str
    status: str
    task_id: str | None = None
    workflow_id: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    elapsed_time: float | None = None
    total_tokens: int | None = None
    total_steps: int | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    usage: dict[str, Any] = field(default_factory=empty_usage)
    files: list[OutputFile] = field(default_factory=list)
    inputs: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_terminal(self) -> bool:
        """Ended (succeeded, failed, stopped, partial-succeeded) or paused for human input."""
        return self.status in ENDED_STATUSES or self.status == "paused"

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES

    @property
    def succeeded(self) -> bool:
        """Succeeded or partial-succeeded (outputs set; a node failed with an error strategy)."""
        return self.status in ("succeeded", "partial-succeeded")

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def paused(self) -> bool:
        return self.status == "paused"

    @classmethod
    def _build(
        cls,
        data: dict[str, Any],
        *,
        run_id: Any,
        task_id: Any,
        raw: dict[str, Any],
        usage: dict[str, Any] | None = None,
        base_url: str | None = None,
    ) -> WorkflowRun:
        if not run_id:
            raise DifyProtocolError("Workflow run without an id")
        status = data.get("status")
        if not isinstance(status, str) or not status:
            raise DifyProtocolError(f"Workflow run {run_id} without a status")
        outputs = data.get("outputs")
        if isinstance(outputs, str):
            try:
                outputs = json.loads(outputs)
            except ValueError:
                outputs = {"text": outputs}
        outputs = outputs if isinstance(outputs, dict) else {}
        tokens = _int(data.get("total_tokens"))
        if usage is None:
            usage = {**empty_usage(), "total_tokens": tokens or 0}
        elif tokens and not usage.get("total_tokens"):
            usage = {**usage, "total_tokens": tokens}
        files = find_output_files(outputs, base_url=base_url)
        if not files and data.get("files"):
            files = find_output_files(data.get("files"), base_url=base_url)
        raw = _without_run_id_task(raw, run_id)
        return cls(
            workflow_run_id=str(run_id),
            status=status,
            task_id=_task_id(task_id, run_id),
            workflow_id=_str(data.get("workflow_id")),
            outputs=outputs,
            error=_str(data.get("error")) or None,
            elapsed_time=_float(data.get("elapsed_time")),
            total_tokens=tokens,
            total_steps=_int(data.get("total_steps")),
            created_at=epoch_to_datetime(data.get("created_at")),
            finished_at=epoch_to_datetime(data.get("finished_at")),
            usage=usage,
            files=files,
            inputs=data.get("inputs"),
            raw=raw,
        )

    @classmethod
    def from_blocking(cls, body: Any, *, base_url: str | None = None) -> WorkflowRun:
        """The blocking ``POST /workflows/run`` answer: ``{task_id, workflow_run_id, data: {...}}``."""
        body = _mapping(body, "the run answer")
        data = _mapping(body.get("data"), "the run answer's data")
        run_id = body.get("workflow_run_id") or data.get("id")
        return cls._build(data, run_id=run_id, task_id=body.get("task_id"), raw=body, base_url=base_url)

    @classmethod
    def from_detail(cls, body: Any, task_id: str | None = None, *, base_url: str | None = None) -> WorkflowRun:
        """``GET /workflows/run/{id}`` (its ``inputs`` may be a JSON string on old servers)."""
        body = _mapping(body, "the run detail")
        data = dict(body)
        if isinstance(data.get("inputs"), str):
            with contextlib.suppress(ValueError):
                data["inputs"] = json.loads(data["inputs"])
        return cls._build(data, run_id=body.get("id"), task_id=task_id, raw=body, base_url=base_url)

    @classmethod
    def from_event(cls, event: Any, *, usage: dict[str, Any] | None = None, base_url: str | None = None) -> WorkflowRun:
        """A ``workflow_finished`` (or ``workflow_paused``) event; ``usage`` summed from its node events."""
        raw = event.raw if isinstance(event, WorkflowEvent) else _mapping(event, "a workflow event")
        data = _mapping(raw.get("data"), "the workflow event's data")
        run_id = raw.get("workflow_run_id") or data.get("id") or data.get("workflow_run_id")
        return cls._build(data, run_id=run_id, task_id=raw.get("task_id"), raw=raw, usage=usage, base_url=base_url)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (an operator's XCom)."""
        return {
            "workflow_run_id": self.workflow_run_id,
            "task_id": self.task_id,
            "workflow_id": self.workflow_id,
            "status": self.status,
            "outputs": self.outputs,
            "error": self.error,
            "elapsed_time": self.elapsed_time,
            "total_tokens": self.total_tokens,
            "total_steps": self.total_steps,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "usage": dict(self.usage),
            "files": [f.raw for f in self.files],
        }


# --- stream events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    """What a ``node_started`` / ``node_finished`` event says about its node."""

    node_id: str | None
    title: str | None
    node_type: str | None
    status: str | None
    elapsed_time: float | None
    tokens: int | None
    price: float | None
    currency: str | None
    execution_id: str | None = None


def human_input_reason(reasons: Any) -> dict[str, Any] | None:
    """The pause reason naming a human-input form (with its ``form_token``), or None.

    Of :func:`human_input_reasons` (keyed ``type`` or ``TYPE``), those with a token; a reason typed
    ``human_input_required`` is preferred over an untyped one (older servers). A reason of another
    type is never a form.
    """
    tokened = [r for r in human_input_reasons(reasons) if r.get("form_token")]
    typed = [r for r in tokened if reason_kind(r) == "human_input_required"]
    chosen = typed or tokened
    return chosen[0] if chosen else None


@dataclass(frozen=True)
class FormRequest:
    """A human-input form (``human_input_required`` data or a ``workflow_paused`` reason)."""

    title: str | None
    form_token: str | None
    actions: list[dict[str, Any]]
    expiration_time: datetime | None
    form_content: str | None = None
    node_id: str | None = None
    #: The reason's kind (``type`` or ``TYPE``), None for a ``human_input_required`` event.
    kind: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> FormRequest:
        return cls(
            kind=reason_kind(data),
            title=_str(data.get("node_title") or data.get("title")),
            form_token=_str(data.get("form_token")),
            actions=[a for a in _list(data.get("actions") or data.get("user_actions")) if isinstance(a, dict)],
            expiration_time=epoch_to_datetime(data.get("expiration_time")),
            form_content=_str(data.get("form_content")),
            node_id=_str(data.get("node_id")),
            raw=data,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "form_token": self.form_token,
            "actions": self.actions,
            "expiration_time": self.expiration_time.isoformat() if self.expiration_time else None,
            "form_content": self.form_content,
            "node_id": self.node_id,
        }


@dataclass(frozen=True)
class WorkflowEvent:
    """One event of a streamed run (the event name is inside the JSON ``data:`` frame).

    Read the same from either Dify API and either server: a ``task_id`` that is the run id is
    None, in ``raw`` too (:func:`_task_id`, Part C3); a pause reason's kind is read under ``type``
    or ``TYPE`` (:func:`reason_kind`, Part C4).
    """

    event: str
    task_id: str | None
    workflow_run_id: str | None
    data: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)
    #: The run of a ``workflow_finished`` as the client's tracker built it (with usage and task id).
    result: WorkflowRun | None = field(default=None, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS

    @property
    def is_known(self) -> bool:
        return self.event in KNOWN_EVENTS

    @classmethod
    def from_api(cls, payload: Any) -> WorkflowEvent:
        payload = _mapping(payload, "a stream event")
        name = payload.get("event")
        if not isinstance(name, str) or not name:
            raise DifyProtocolError("Stream event without an event name")
        data = payload.get("data")
        run_id = payload.get("workflow_run_id")
        return cls(
            event=name,
            task_id=_task_id(payload.get("task_id"), run_id),
            workflow_run_id=_str(run_id),
            data=data if isinstance(data, dict) else {},
            raw=_without_run_id_task(payload, run_id),
        )

    @property
    def node(self) -> NodeView | None:
        if not self.event.startswith("node_"):
            return None
        d = self.data
        meta: dict[str, Any] = d["execution_metadata"] if isinstance(d.get("execution_metadata"), dict) else {}
        return NodeView(
            node_id=_str(d.get("node_id")),
            title=_str(d.get("title")),
            node_type=_str(d.get("node_type")),
            status=_str(d.get("status")) or ("running" if self.event == "node_started" else None),
            elapsed_time=_float(d.get("elapsed_time")),
            tokens=_int(meta.get("total_tokens")),
            price=_float(meta.get("total_price")),
            currency=_str(meta.get("currency")),
            execution_id=_str(d.get("id")),
        )

    @property
    def text(self) -> str | None:
        if self.event != "text_chunk":
            return None
        text = self.data.get("text")
        return text if isinstance(text, str) else None

    @property
    def run(self) -> WorkflowRun | None:
        if self.event != "workflow_finished":
            return None
        return self.result or WorkflowRun.from_event(self)

    @property
    def form(self) -> FormRequest | None:
        """The form of a ``human_input_required`` event, or the first of a ``workflow_paused``'s reasons."""
        if self.event == "human_input_required":
            return FormRequest.from_api(self.data)
        if self.event == "workflow_paused":
            reason = human_input_reason(self.data.get("reasons"))
            return FormRequest.from_api(reason) if reason is not None else None
        return None

    @property
    def forms(self) -> list[FormRequest]:
        """Every form a ``workflow_paused`` waits on (its ``reasons``), or a ``human_input_required``'s one."""
        if self.event == "workflow_paused":
            return [FormRequest.from_api(r) for r in human_input_reasons(self.data.get("reasons"))]
        form = self.form
        return [form] if form is not None else []

    @property
    def error_code(self) -> str | None:
        return _str(self.raw.get("code")) if self.event == "error" else None

    @property
    def error_message(self) -> str | None:
        return _str(self.raw.get("message")) if self.event == "error" else None


# --- logs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowLog:
    """One ``GET /workflows/logs`` item (the app's run history, newest first)."""

    id: str
    workflow_run_id: str
    status: str | None
    created_at: datetime | None
    session_id: str | None
    elapsed_time: float | None = None
    total_tokens: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, item: Any) -> WorkflowLog:
        item = _mapping(item, "a workflow log item")
        run: Mapping[str, Any] = item["workflow_run"] if isinstance(item.get("workflow_run"), Mapping) else {}
        user: Mapping[str, Any] = (
            item["created_by_end_user"] if isinstance(item.get("created_by_end_user"), Mapping) else {}
        )
        run_id = run.get("id")
        if not run_id:
            raise DifyProtocolError("Workflow log item without a run id")
        return cls(
            id=str(item.get("id") or run_id),
            workflow_run_id=str(run_id),
            status=_str(run.get("status")),
            created_at=epoch_to_datetime(run.get("created_at") or item.get("created_at")),
            session_id=_str(user.get("session_id")),
            elapsed_time=_float(run.get("elapsed_time")),
            total_tokens=_int(run.get("total_tokens")),
            raw=item,
        )


# --- records: a run to and from what the ledger, the XCom and a trigger event keep -----------------


def run_record(run: WorkflowRun) -> dict[str, Any]:
    """What the ledger keeps of a run (``raw`` as Dify sent it, the summed usage, the task id).

    The same record travels in a trigger's success event, so operators, sensors and triggers read
    it back with :func:`run_from_record`; it lives beside the model so none of them imports another.
    """
    return {"body": run.raw, "usage": dict(run.usage), "task_id": run.task_id}


def run_from_record(record: Mapping[str, Any], base_url: str | None) -> WorkflowRun:
    """The ``WorkflowRun`` a ``run_record`` (or a trigger event's ``run``) stands for."""
    body = dict(record.get("body") or {})
    task_id = record.get("task_id")
    if "event" in body:
        run = WorkflowRun.from_event(body, usage=record.get("usage"), base_url=base_url)
    elif isinstance(body.get("data"), dict):
        run = WorkflowRun.from_blocking(body, base_url=base_url)
    else:
        run = WorkflowRun.from_detail(body, task_id=task_id, base_url=base_url)
    if record.get("usage") and not any(run.usage.get(k) for k in ("total_price",)):
        run = replace(run, usage={**run.usage, **record["usage"]})
    if task_id and not run.task_id:
        run = replace(run, task_id=task_id)
    return run


def form_of_pause(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The human-input form a ``workflow_paused`` data (or a paused blocking answer) waits on, as
    ``FormRequest.as_dict()``; ``{}`` when its reasons name none with a token (``type`` or ``TYPE``:
    :func:`human_input_reason`)."""
    reason = human_input_reason((data or {}).get("reasons"))
    return FormRequest.from_api(reason).as_dict() if reason is not None else {}


def form_of_events(events: Iterable[Any]) -> dict[str, Any] | None:
    """The form of the first ``workflow_paused`` in a run's events (a state snapshot replays it);
    None once the run is seen to end or the events end without a pause."""
    for event in events:
        if event.event == "workflow_paused":
            return form_of_pause(event.data) or None
        if event.event == "workflow_finished":
            return None
    return None
