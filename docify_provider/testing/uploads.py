"""Streaming parser for ``POST /v1/file/upload`` (multipart/form-data).

Uploads can be 50 MiB; the emulator runs in the test process and must not distort memory
measurements of the client, so the body is parsed while it arrives from the socket, in
64 KiB reads: the file part is hashed and counted, and only its first 64 KiB are kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from docify_provider.testing.errors import RequestError
from docify_provider.testing.filetypes import (
    DOCUMENT_EXTENSIONS,
    IMAGE_EXTENSIONS,
    SIZE_LIMITS,
    extension,
    file_type_for,
)
from docify_provider.testing.http_io import BodyReader

HEAD_SIZE = 64 * 1024
MAX_FIELD_SIZE = 4096
#: Bodies larger than this are not even drained: 413 and the connection is closed.
MAX_BODY_SIZE = 64 * 1024 * 1024


@dataclass
class ParsedUpload:
    """What the server learned from an upload body (metadata, hash, first bytes)."""

    user: str | None = None
    file_name: str | None = None
    content_type: str | None = None
    file_parts: int = 0
    #: Names of the form fields that carry a file (a ``filename``), each once: what Dify's
    #: ``len(request.files)`` counts.
    file_fields: set[str] = field(default_factory=set)
    size: int = 0
    head: bytearray = field(default_factory=bytearray)
    sha256: str = ""

    @property
    def file_type(self) -> str | None:
        return file_type_for(self.file_name or "")


class _Part:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.field = bytearray()
        self.value = bytearray()
        self.name: str | None = None
        self.is_file = False


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


class _UploadParser:
    """python-multipart callbacks that fold the body into a :class:`ParsedUpload`."""

    def __init__(self, boundary: bytes) -> None:
        self.result = ParsedUpload()
        self.ended = False
        self._part = _Part()
        self._user = bytearray()
        self._hash = hashlib.sha256()
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._part.field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._part.value += data[start:end]

    def _on_header_end(self) -> None:
        part = self._part
        part.headers[part.field.decode("latin-1").lower()] = part.value.decode("latin-1")
        part.field, part.value = bytearray(), bytearray()

    def _on_headers_finished(self) -> None:
        part = self._part
        _, options = parse_options_header(part.headers.get("content-disposition", ""))
        part.name = _decode(options.get(b"name", b""))
        if b"filename" in options:
            self.result.file_fields.add(part.name)
        if part.name == "file":
            self.result.file_parts += 1
            part.is_file = self.result.file_parts == 1
            if part.is_file:
                raw_name = _decode(options.get(b"filename", b""))
                self.result.file_name = raw_name.replace("\\", "/").rsplit("/", 1)[-1]
                self.result.content_type = part.headers.get("content-type")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part.is_file:
            piece = data[start:end]
            self.result.size += len(piece)
            self._hash.update(piece)
            missing = HEAD_SIZE - len(self.result.head)
            if missing > 0:
                self.result.head += piece[:missing]
        elif part.name == "user" and len(self._user) <= MAX_FIELD_SIZE:
            self._user += data[start:end]

    def _on_part_end(self) -> None:
        if self._part.name == "user" and self.result.user is None:
            self.result.user = _decode(bytes(self._user))
        if self._part.is_file:
            self.result.sha256 = self._hash.hexdigest()
        self._part = _Part()

    def _on_end(self) -> None:
        self.ended = True


def parse_upload(reader: BodyReader, content_type: str | None) -> ParsedUpload:
    """Stream-parse and validate a Docify upload body; raise :class:`RequestError` on rejection."""
    result = parse_multipart(reader, content_type)
    _check(result)
    return result


def parse_multipart(reader: BodyReader, content_type: str | None, max_body: int = MAX_BODY_SIZE) -> ParsedUpload:
    """Stream-parse a ``multipart/form-data`` body with a ``file`` part and a ``user`` field.

    Only the framing is checked (:class:`RequestError` 400, or 413 beyond ``max_body``
    bytes); what the parts must contain is the caller's to check.
    """
    ctype, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise RequestError("Content-Type must be multipart/form-data with a boundary")
    upload = _UploadParser(boundary)
    try:
        for data in reader:
            upload.parser.write(data)
            if reader.bytes_read > max_body:
                raise RequestError(f"Request body exceeds {max_body} bytes", status=413)
        upload.parser.finalize()
    except MultipartParseError:
        raise RequestError("Malformed multipart/form-data body") from None
    if not upload.ended:
        raise RequestError("Malformed multipart/form-data body: missing closing boundary")
    return upload.result


def _check(result: ParsedUpload) -> None:
    if result.file_parts == 0:
        raise RequestError("Missing required field 'file'")
    if result.file_parts > 1:
        raise RequestError("Only one 'file' part is allowed per upload")
    if result.user is None or not result.user.strip():
        raise RequestError("Missing required field 'user'")
    name = result.file_name or ""
    file_type = result.file_type
    if not name:
        raise RequestError("The 'file' part has no filename")
    if file_type is None:
        allowed = ", ".join(sorted(IMAGE_EXTENSIONS | DOCUMENT_EXTENSIONS))
        raise RequestError(f"Unsupported file extension '{extension(name)}'; allowed: {allowed}")
    limit = SIZE_LIMITS[file_type]
    if result.size > limit:
        raise RequestError(f"File too large: {result.size} bytes exceeds the {file_type} limit of {limit} bytes")
