"""Dify's file objects: an upload's answer (a run's file input) and the files a run's outputs name.

Separate from the run and event models (``models``): uploads happen before a run and downloads
after it, and file-type rules (extensions) change on their own schedule. ``WorkflowRun`` finds its
output files with :func:`find_output_files`. Re-exported by ``models``, where callers have always
imported them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from docify_provider.dify.errors import DifyProtocolError
from docify_provider.dify.parsing import epoch_to_datetime, json_object, opt_int, opt_str

__all__ = [
    "FILE_IDENTITY",
    "FILE_TYPE_EXTENSIONS",
    "OutputFile",
    "UploadedFile",
    "file_type_for_extension",
    "find_output_files",
]

#: The ``dify_model_identity`` of a file object in a run's outputs.
FILE_IDENTITY = "__dify__file__"


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
        data = json_object(data, "the upload answer")
        if not data.get("id"):
            raise DifyProtocolError("Upload answer without a file id")
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            size=opt_int(data.get("size")),
            extension=opt_str(data.get("extension")),
            mime_type=opt_str(data.get("mime_type")),
            created_by=opt_str(data.get("created_by")),
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
            file_size=opt_int(data.get("size")),
            mime_type=opt_str(data.get("mime_type")),
            extension=opt_str(data.get("extension")),
            type=opt_str(data.get("type")),
            id=opt_str(data.get("id") or data.get("related_id")),
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
