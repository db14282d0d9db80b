"""Server-side validation of run requests, as the real service does it.

A client that skips its own checks (or gets them wrong) must see the same 400 responses it
would get in production; only a run that passes validation is started and billed.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from docify_provider.testing.errors import RequestError
from docify_provider.testing.filetypes import file_type_for
from docify_provider.testing.scenarios import FileInput, Scenario

FILE_TYPES = ("DOCUMENT", "IMAGE")


def _url_file(url: str, declared_type: str | None) -> FileInput:
    name = posixpath.basename(unquote(urlsplit(url).path)) or "remote_file"
    return FileInput(
        name=name,
        sha256=hashlib.sha256(url.encode("utf-8")).hexdigest(),
        size=0,
        file_type=declared_type or file_type_for(name) or "DOCUMENT",
        url=url,
    )


def _resolve_files(variable: str, files: list[Any], resolve: Callable[[str], FileInput | None]) -> list[FileInput]:
    resolved = []
    for index, entry in enumerate(files):
        if not isinstance(entry, Mapping):
            raise RequestError(f"Input '{variable}': file entry {index} must be an object")
        file_type = entry.get("fileType")
        if file_type is not None and file_type not in FILE_TYPES:
            raise RequestError(f"Input '{variable}': fileType must be one of {list(FILE_TYPES)}")
        oid, url = entry.get("uploadFileOid"), entry.get("url")
        if oid:
            found = resolve(str(oid))
            if found is None:
                raise RequestError(f"Input '{variable}': unknown uploadFileOid '{oid}'")
            resolved.append(found)
        elif url:
            if not isinstance(url, str):
                raise RequestError(f"Input '{variable}': 'url' must be a string")
            resolved.append(_url_file(url, file_type))
        else:
            raise RequestError(f"Input '{variable}': file entry {index} needs 'url' or 'uploadFileOid'")
    return resolved


def _check_text(variable: str, param: Mapping[str, Any], text: str) -> None:
    max_length = int(param.get("maxLength") or 0)
    if max_length > 0 and len(text) > max_length:
        raise RequestError(f"Input '{variable}' exceeds maxLength {max_length} ({len(text)} characters)")
    options = param.get("options")
    if param.get("type") == "SELECT" and options is not None and text not in options:
        raise RequestError(f"Input '{variable}': value {text!r} is not one of the options {list(options)}")


def validate_run(
    body: Any, scenario: Scenario, resolve: Callable[[str], FileInput | None]
) -> tuple[dict[str, Any], dict[str, list[FileInput]]]:
    """Validate a run request body; return (inputs, resolved files per variable).

    ``resolve(oid)`` finds an uploaded file visible to the caller. Raises :class:`RequestError`.
    """
    if not isinstance(body, Mapping):
        raise RequestError("Request body must be a JSON object")
    for name in ("user", "additionalInfo"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise RequestError(f"'{name}' must be a string")
    inputs = body.get("inputs")
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, Mapping):
        raise RequestError("'inputs' must be an object")
    for variable in inputs:
        if scenario.parameter(variable) is None:
            raise RequestError(f"Unknown input variable '{variable}' for scenario {scenario.code}")
    files: dict[str, list[FileInput]] = {}
    for param in scenario.parameters:
        variable = param["variable"]
        value = inputs.get(variable)
        if value is None:
            if param.get("required"):
                raise RequestError(f"Missing required input '{variable}'")
            continue
        if not isinstance(value, Mapping):
            raise RequestError(f"Input '{variable}' must be an object with 'text' and/or 'files'")
        text, entries = value.get("text"), value.get("files")
        if text is not None and not isinstance(text, str):
            raise RequestError(f"Input '{variable}': 'text' must be a string")
        if entries is not None and not isinstance(entries, list):
            raise RequestError(f"Input '{variable}': 'files' must be a list")
        if param.get("type") in ("FILE", "FILELIST"):
            entries = entries or []
            if param["type"] == "FILE" and len(entries) != 1:
                raise RequestError(f"Input '{variable}' (FILE) needs exactly one file, got {len(entries)}")
            if param["type"] == "FILELIST" and not entries:
                raise RequestError(f"Input '{variable}' (FILELIST) needs at least one file")
            files[variable] = _resolve_files(variable, entries, resolve)
        elif text:
            _check_text(variable, param, text)
        elif param.get("required"):
            raise RequestError(f"Missing required input '{variable}'")
    return dict(inputs), files
