"""Server-side validation of ``POST /v1/workflows/run`` as Dify does it (A10, A9).

Messages follow Dify's ``_validate_inputs`` and file factory; every failure is a 400
``invalid_param``. Files are resolved: ``local_file`` ids must be uploads of the workspace,
``remote_url`` mappings need a ``url`` (the emulator never fetches it).
"""

from __future__ import annotations

import hashlib
import mimetypes
import posixpath
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from docify_provider.testing.dify.apps import DifyApp
from docify_provider.testing.errors import RequestError
from docify_provider.testing.scenarios import FileInput

FILE_TYPES = ("document", "image", "audio", "video", "custom")
TRANSFER_METHODS = ("local_file", "remote_url", "tool_file", "datasource_file")
_EXTENSIONS = {
    "document": {
        "txt", "md", "markdown", "mdx", "pdf", "html", "htm", "xlsx", "xls", "docx", "csv",
        "eml", "msg", "pptx", "ppt", "xml", "epub", "vtt", "properties",
    },
    "image": {"jpg", "jpeg", "png", "gif", "webp", "svg"},
    "audio": {"mp3", "m4a", "wav", "amr", "mpga"},
    "video": {"mp4", "mov", "mpeg", "webm"},
}  # fmt: skip


def invalid(message: str) -> RequestError:
    return RequestError(message, 400, "invalid_param")


class FileMappingError(RequestError):
    """A 400 ``invalid_param`` from building a file mapping (Dify's file factory).

    Dify builds file arguments in the API process before it hands a streaming run to a worker,
    so these stay a synchronous 400 even where input validation moved to the worker (Part C1).
    """


def _file_invalid(message: str) -> FileMappingError:
    return FileMappingError(message, 400, "invalid_param")


def file_type_of(extension: str) -> str:
    """Dify's file type for an extension (with or without the dot): document, image, ... custom."""
    ext = extension.lower().lstrip(".")
    return next((t for t, exts in _EXTENSIONS.items() if ext in exts), "custom")


def extension_of(name: str) -> str:
    """``".pdf"`` style extension of a file name ("" when there is none)."""
    base = name.rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[-1].lower() if "." in base.lstrip(".") else ""


@dataclass(frozen=True)
class DifyFile:
    """A file input resolved by the server."""

    type: str
    transfer_method: str
    filename: str
    extension: str
    mime_type: str
    size: int
    sha256: str
    upload_file_id: str | None = None
    url: str | None = None

    def as_mapping(self) -> dict[str, Any]:
        """The file as a run's ``inputs`` show it (a Dify file object, abridged)."""
        return {
            "dify_model_identity": "__dify__file__",
            "type": self.type,
            "transfer_method": self.transfer_method,
            "related_id": self.upload_file_id,
            "remote_url": self.url,
            "filename": self.filename,
            "extension": self.extension,
            "mime_type": self.mime_type,
            "size": self.size,
        }


def _resolve(mapping: Any, variable: str, resolve: Callable[[str], FileInput | None]) -> DifyFile:
    if not isinstance(mapping, Mapping):
        raise _file_invalid(f"{variable} in input form must be a file")
    method = mapping.get("transfer_method")
    if method not in TRANSFER_METHODS:
        raise _file_invalid(f"Invalid transfer method: {method}")
    declared = mapping.get("type")
    if declared is not None and declared not in FILE_TYPES:
        raise _file_invalid(f"Invalid file type: {declared}")
    if method == "remote_url":
        url = mapping.get("url") or mapping.get("remote_url")
        if not isinstance(url, str) or not url:
            raise _file_invalid("Invalid file url")
        name = posixpath.basename(unquote(urlsplit(url).path)) or "remote_file"
        ext = extension_of(name)
        detected = file_type_of(ext)
        return DifyFile(
            type=declared if declared and declared != "custom" else detected,
            transfer_method=method,
            filename=name,
            extension=ext,
            mime_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
            size=-1,
            sha256=hashlib.sha256(url.encode("utf-8")).hexdigest(),
            url=url,
        )
    file_id = mapping.get("upload_file_id") or mapping.get("tool_file_id") or mapping.get("datasource_file_id")
    try:
        uuid.UUID(str(file_id))
    except ValueError:
        raise _file_invalid("Invalid upload file id format") from None
    found = resolve(str(file_id))
    if found is None:
        raise _file_invalid("Invalid upload file")
    ext = extension_of(found.name)
    return DifyFile(
        type=declared if declared and declared != "custom" else file_type_of(ext),
        transfer_method=method,
        filename=found.name,
        extension=ext,
        mime_type=mimetypes.guess_type(found.name)[0] or "application/octet-stream",
        size=found.size,
        sha256=found.sha256,
        upload_file_id=str(file_id),
    )


def _check_file(file: DifyFile, var: Mapping[str, Any]) -> None:
    """Dify's ``_is_file_valid_with_config``: types (``custom`` passes), extensions for
    ``custom`` files, upload methods."""
    allowed_types = var.get("allowed_file_types") or []
    allowed_exts = [e.lower() for e in var.get("allowed_file_extensions") or []]
    methods = var.get("allowed_file_upload_methods") or []
    if (
        (allowed_types and file.type not in allowed_types and file.type != "custom")
        or (file.type == "custom" and allowed_exts and file.extension not in allowed_exts)
        or (methods and file.transfer_method not in methods)
    ):
        raise _file_invalid(f"File validation failed for file: {file.filename}")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise invalid(f"{name} in input form must be a valid number")
    if isinstance(value, int | float):
        return value
    try:
        return float(str(value))
    except ValueError:
        raise invalid(f"{name} in input form must be a valid number") from None


def validate_inputs(
    app: DifyApp, inputs: Any, resolve: Callable[[str], FileInput | None]
) -> tuple[dict[str, Any], dict[str, list[DifyFile]]]:
    """Return (inputs as the run stores them, resolved files per file variable)."""
    if not isinstance(inputs, Mapping):
        raise invalid("inputs must be an object")
    values: dict[str, Any] = {}
    files: dict[str, list[DifyFile]] = {}
    for var in app.variables:
        name, type_ = var["variable"], var["type"]
        value = inputs.get(name)
        if value is None or value == "" or value == []:
            if var.get("required"):
                raise invalid(f"{name} is required in input form")
            if var.get("default") not in (None, ""):
                values[name] = var["default"]
            continue
        max_length = var.get("max_length")
        if type_ in ("text-input", "select", "paragraph"):
            if not isinstance(value, str):
                raise invalid(f"{name} in input form must be a string")
            value = value.replace("\x00", "")
            if type_ == "select" and value not in var.get("options", []):
                raise invalid(f"{name} in input form must be one of the following: {var.get('options')}")
            if max_length and len(value) > max_length:
                raise invalid(f"{name} in input form must be less than {max_length} characters")
        elif type_ == "number":
            value = _number(name, value)
        elif type_ == "file":
            resolved = _resolve(value, name, resolve)
            _check_file(resolved, var)
            files[name] = [resolved]
            value = resolved.as_mapping()
        elif type_ == "file-list":
            if not isinstance(value, list):
                raise invalid(f"{name} in input form must be a list of files")
            if max_length and len(value) > max_length:
                raise invalid(f"{name} in input form must be less than {max_length} files")
            files[name] = [_resolve(item, name, resolve) for item in value]
            for resolved in files[name]:
                _check_file(resolved, var)
            value = [f.as_mapping() for f in files[name]]
        values[name] = value
    return values, files
