"""Typed, immutable views of what the Docify API sends and receives.

The API speaks camelCase JSON; these models give snake_case attributes, timezone-aware datetimes
and a parsed ``json_result``, and keep the original payload in ``raw`` so that nothing the server
returned is ever dropped (a field we do not model yet is still there, and a stored result can be
rebuilt with ``from_api(raw)``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

import pendulum

from docify_provider.docify.errors import DocifyProtocolError


class ParameterType(str, Enum):
    """Scenario parameter types documented by Docify."""

    FILE = "FILE"
    FILELIST = "FILELIST"
    TEXT = "TEXT"
    SELECT = "SELECT"
    TEXTAREA = "TEXTAREA"

    @property
    def takes_files(self) -> bool:
        return self in (ParameterType.FILE, ParameterType.FILELIST)


class FileType(str, Enum):
    """File types the run API accepts in ``inputs[*].files[*].fileType``."""

    IMAGE = "IMAGE"
    DOCUMENT = "DOCUMENT"


class EventType(str, Enum):
    """Stream event types documented by Docify; others are kept as plain strings."""

    START = "START"
    PREPARE_START = "PREPARE_START"
    PREPARE_END = "PREPARE_END"
    TEXT = "TEXT"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"


#: Documented event type -> its one shared string; the types that end a stream.
_EVENT_TYPES: dict[str, str] = {t.value: t.value for t in EventType}
_TERMINAL_TYPES = frozenset({EventType.COMPLETE.value, EventType.ERROR.value})


def ms_to_datetime(value: Any) -> datetime | None:
    """Milliseconds since the epoch -> aware UTC datetime (a ``pendulum.DateTime``); None stays None."""
    if value is None or value == "":
        return None
    try:
        # The value ``pendulum.from_timestamp(seconds, tz="UTC")`` returns, built directly: that call
        # converts time zones twice and costs ~6x more, once per stream event.
        utc = datetime.fromtimestamp(float(value) / 1000.0, tz=timezone.utc)
        return pendulum.DateTime(
            utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=pendulum.UTC
        )
    except (TypeError, ValueError, OverflowError):
        return None


def _as_mapping(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise DocifyProtocolError(f"Expected a JSON object for {what}, got {type(payload).__name__}")
    return payload


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Parameter:
    """One input of a scenario, as ``GET /v1/scenario/info`` describes it."""

    type: str
    variable: str
    label: str = ""
    required: bool = False
    max_length: int | None = None
    description: str = ""
    options: tuple[str, ...] | None = None

    @property
    def takes_files(self) -> bool:
        return self.type in (ParameterType.FILE.value, ParameterType.FILELIST.value)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Parameter:
        data = _as_mapping(data, "a scenario parameter")
        options = data.get("options")
        parsed_options: tuple[str, ...] | None = None
        if isinstance(options, list):
            # Options come either as plain strings or as {"label", "value"} objects.
            parsed_options = tuple(
                str(o.get("value", o.get("label"))) if isinstance(o, dict) else str(o) for o in options
            )
        max_length = _int_or_none(data.get("maxLength"))
        return cls(
            type=str(data.get("type") or "").upper(),
            variable=str(data.get("variable") or ""),
            label=str(data.get("label") or ""),
            required=bool(data.get("required")),
            # Docify sends maxLength 0 for "no limit" (see the FILE example in the API docs).
            max_length=max_length if max_length and max_length > 0 else None,
            description=str(data.get("description") or ""),
            options=parsed_options,
        )


@dataclass(frozen=True)
class ScenarioInfo:
    """The scenario an API key is bound to, with its parameters."""

    scenario_id: str
    scenario_code: str
    scenario_name: str
    description: str
    parameters: tuple[Parameter, ...]
    product_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def parameter(self, variable: str) -> Parameter | None:
        return next((p for p in self.parameters if p.variable == variable), None)

    @classmethod
    def from_api(cls, data: Any) -> ScenarioInfo:
        data = _as_mapping(data, "the scenario info")
        params = data.get("parameters") or []
        if not isinstance(params, list):
            raise DocifyProtocolError("Scenario info 'parameters' is not a list")
        return cls(
            scenario_id=str(data.get("scenarioId") or ""),
            scenario_code=str(data.get("scenarioCode") or ""),
            scenario_name=str(data.get("scenarioName") or ""),
            description=str(data.get("description") or ""),
            parameters=tuple(Parameter.from_api(p) for p in params),
            product_id=None if data.get("productId") is None else str(data.get("productId")),
            raw=data,
        )


@dataclass(frozen=True)
class UploadedFile:
    """A file uploaded with ``POST /v1/file/upload``; pass it as a run input."""

    upload_file_oid: str
    file_name: str
    file_size: int | None
    file_type: str

    def to_input(self) -> dict[str, str]:
        """The entry for ``inputs[var].files`` in a run request."""
        return {"uploadFileOid": self.upload_file_oid, "fileType": self.file_type}

    def as_dict(self) -> dict[str, Any]:
        return {
            "upload_file_oid": self.upload_file_oid,
            "file_name": self.file_name,
            "file_size": self.file_size,
            "file_type": self.file_type,
        }

    @classmethod
    def from_api(cls, data: Any) -> UploadedFile:
        data = _as_mapping(data, "the upload response")
        oid = data.get("uploadFileOid")
        if not oid:
            raise DocifyProtocolError("Upload response has no uploadFileOid")
        return cls(
            upload_file_oid=str(oid),
            file_name=str(data.get("fileName") or ""),
            file_size=_int_or_none(data.get("fileSize")),
            file_type=str(data.get("fileType") or "").upper(),
        )


@dataclass(frozen=True)
class ResultFile:
    """An attachment a run produced; download it with ``DocifyHook.download_file``."""

    file_url: str
    file_name: str
    file_size: int | None

    @classmethod
    def from_api(cls, data: Any) -> ResultFile:
        data = _as_mapping(data, "a result file")
        return cls(
            file_url=str(data.get("fileUrl") or ""),
            file_name=str(data.get("fileName") or ""),
            file_size=_int_or_none(data.get("fileSize")),
        )


def parse_json_result(value: Any) -> Any:
    """``jsonResult`` is a string holding JSON: parse it, or keep the raw string when it is not JSON.

    The API docs show it escaped twice (``{\\"invoice_number\\":...}``); such a string, or JSON
    encoded twice, is unwrapped once more. Anything else that is not JSON is kept as it came.
    """
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        if '\\"' not in value:
            return value
        try:  # quotes escaped once too often: unescape as a JSON string body, then parse
            parsed = json.loads(json.loads(f'"{value}"'))
        except (ValueError, TypeError):
            return value
        return parsed if isinstance(parsed, (dict, list)) else value
    if isinstance(parsed, str) and parsed.strip()[:1] in ("{", "["):
        try:
            return json.loads(parsed)
        except ValueError:
            return parsed
    return parsed


@dataclass(frozen=True)
class RunResult:
    """The outcome of one scenario run (blocking response, or the COMPLETE event's ``response``)."""

    run_id: str
    scenario_id: str
    is_success: bool
    result: str | None
    json_result: Any
    created_at: datetime | None
    finished_at: datetime | None
    elapsed_ms: int | None
    error_message: str | None
    cost_points: float | None
    files: tuple[ResultFile, ...]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Any) -> RunResult:
        data = _as_mapping(data, "the run result")
        files = data.get("files") or []
        if not isinstance(files, list):
            raise DocifyProtocolError("Run result 'files' is not a list")
        cost = data.get("costPoints")
        try:
            cost_points = None if cost is None else float(cost)
        except (TypeError, ValueError):
            cost_points = None
        return cls(
            run_id=str(data.get("runId") or ""),
            scenario_id=str(data.get("scenarioId") or ""),
            is_success=bool(data.get("isSuccess")),
            result=data.get("result"),
            json_result=parse_json_result(data.get("jsonResult")),
            # The API documents ``createAt``; accept ``createdAt`` too should the server fix the typo.
            created_at=ms_to_datetime(data.get("createAt", data.get("createdAt"))),
            finished_at=ms_to_datetime(data.get("finishedAt")),
            elapsed_ms=_int_or_none(data.get("elapsedTime")),
            error_message=data.get("errorMessage"),
            cost_points=cost_points,
            files=tuple(ResultFile.from_api(f) for f in files),
            raw=data,
        )


@dataclass(frozen=True)
class StreamEvent:
    """One Server-Sent Event of ``POST /v1/scenario/run/streaming``.

    ``type`` is upper-case ("TEXT", "COMPLETE", ...). Unknown types are kept as they came so that
    a newer server does not break an older client.
    """

    type: str
    session_id: str | None = None
    content: str | None = None
    response: RunResult | None = None
    error: str | None = None
    chunk_id: str | None = None
    timestamp: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.type in _TERMINAL_TYPES

    @classmethod
    def from_api(cls, data: Any, *, sse_event: str | None = None) -> StreamEvent:
        """Build from the event's JSON; ``sse_event`` is the SSE ``event:`` name, if any.

        Runs once per stream event, so it skips what most events never need: the instance is filled
        in directly (a frozen dataclass's ``__init__`` sets each field through
        ``object.__setattr__``), ``timestamp`` is converted on first read, and a ``RunResult`` is
        built only when the event carries a response object (COMPLETE).
        """
        if type(data) is not dict:
            data = _as_mapping(data, "a stream event")
        get = data.get
        event_type = get("type") or sse_event or ""
        # Documented types map to one shared string each (no new string per event); others upper-cased.
        kind = _EVENT_TYPES.get(event_type) if type(event_type) is str else None
        if kind is None:
            kind = str(event_type).upper()
            kind = _EVENT_TYPES.get(kind, kind)
        response = get("response")
        content = get("content")
        if content is not None and type(content) is not str:
            content = str(content)
        event = object.__new__(cls)
        # No "timestamp" key: ``_TimestampFromRaw`` converts ``raw["timestamp"]`` when it is read.
        event.__dict__.update(
            type=kind,
            session_id=get("sessionId"),
            content=content,
            response=RunResult.from_api(response) if isinstance(response, dict) else None,
            error=get("error"),
            chunk_id=get("chunkId"),
            raw=data,
        )
        return event


class _TimestampFromRaw:
    """``StreamEvent.timestamp`` of an event built by ``from_api``: ``raw["timestamp"]`` converted on first read.

    A non-data descriptor: an instance built by ``__init__`` (or ``dataclasses.replace``) holds its
    own ``timestamp`` in ``__dict__``, which takes precedence; reading it on the class gives the
    field's default, None. The converted value is cached on the instance.
    """

    def __get__(self, obj: StreamEvent | None, owner: type | None = None) -> datetime | None:
        if obj is None:
            return None
        value = ms_to_datetime(obj.raw.get("timestamp"))
        obj.__dict__["timestamp"] = value
        return value


setattr(StreamEvent, "timestamp", _TimestampFromRaw())  # noqa: B010 - after @dataclass read the default
