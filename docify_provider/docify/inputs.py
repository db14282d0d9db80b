"""Turning user-friendly run inputs into the wire format, and checking them before paying.

A run costs points and cannot be undone, so every mistake we can see locally is reported before the
request is sent, all at once (one error listing every problem), naming the parameter and what to
fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import posixpath
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from docify_provider.docify.errors import DocifyInputError
from docify_provider.docify.models import FileType, ScenarioInfo, UploadedFile

#: Extensions Docify treats as images; everything else it accepts is a document.
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "heic", "svg"})
DOCUMENT_EXTENSIONS = frozenset(
    {"pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "txt", "csv", "md", "html", "htm", "eml", "rtf"}
)
#: Documented single-file limits.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024


def infer_file_type(name: str | None, mime_type: str | None = None) -> FileType | None:
    """IMAGE or DOCUMENT from a file name or MIME type; None when neither tells."""
    if mime_type:
        major = mime_type.split("/", 1)[0].lower()
        if major == "image":
            return FileType.IMAGE
        if major in ("application", "text"):
            return FileType.DOCUMENT
    if name:
        ext = posixpath.splitext(name.lower())[1].lstrip(".")
        if ext in IMAGE_EXTENSIONS:
            return FileType.IMAGE
        if ext in DOCUMENT_EXTENSIONS:
            return FileType.DOCUMENT
        # No guess from the MIME type of other extensions: mimetypes calls .exe, .zip or .json
        # "application/...", which would pass them as DOCUMENT and have Docify reject the upload
        # (HTTP 400) after other files may already have been uploaded.
    return None


def max_bytes_for(file_type: FileType | str) -> int:
    return MAX_IMAGE_BYTES if FileType(file_type) is FileType.IMAGE else MAX_DOCUMENT_BYTES


def _file_entry(value: Any, where: str, problems: list[str]) -> dict[str, Any] | None:
    """One element of ``files``: an UploadedFile, an upload-operator XCom, or a wire dict."""
    if isinstance(value, UploadedFile):
        return value.to_input()
    if isinstance(value, Mapping):
        oid = value.get("uploadFileOid") or value.get("upload_file_oid")
        url = value.get("url")
        file_type = value.get("fileType") or value.get("file_type")
        if bool(oid) == bool(url):
            problems.append(f"{where}: give exactly one of 'uploadFileOid' or 'url', got {dict(value)!r}")
            return None
        if url:
            if urlsplit(str(url)).scheme not in ("http", "https"):
                problems.append(f"{where}: url {url!r} must be an http(s) URL Docify can fetch")
                return None
            file_type = file_type or infer_file_type(urlsplit(str(url)).path) or FileType.DOCUMENT
        # str() of a (str, Enum) member is "FileType.IMAGE", not "IMAGE": take the value.
        type_name = file_type.value if isinstance(file_type, FileType) else str(file_type or "").upper()
        if type_name not in FileType.__members__:
            problems.append(f"{where}: fileType must be IMAGE or DOCUMENT, got {file_type!r}")
            return None
        entry = {"uploadFileOid": str(oid)} if oid else {"url": str(url)}
        entry["fileType"] = type_name
        return entry
    problems.append(
        f"{where}: expected an uploaded file (UploadedFile, {{'uploadFileOid': ...}} or {{'url': ...}}), "
        f"got {type(value).__name__}"
    )
    return None


def _looks_like_file(value: Any) -> bool:
    return isinstance(value, UploadedFile) or (
        isinstance(value, Mapping)
        and ("uploadFileOid" in value or "upload_file_oid" in value or ("url" in value and "text" not in value))
    )


def normalize_inputs(inputs: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Convert shorthand inputs to the wire format ``{var: {"text": ...} | {"files": [...]}}``.

    Accepted per variable: a plain str/number/bool (text), an ``UploadedFile``, the dict an upload
    returns, ``{"url": ...}``, a list of files, or the wire form ``{"text": ..., "files": [...]}``.
    """
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise DocifyInputError([f"inputs must be a mapping of variable name to value, got {type(inputs).__name__}"])
    problems: list[str] = []
    out: dict[str, dict[str, Any]] = {}
    for name, value in inputs.items():
        where = f"inputs[{name!r}]"
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: variable names must be non-empty strings")
            continue
        if isinstance(value, bool):
            out[name] = {"text": "true" if value else "false"}
        elif isinstance(value, (str, int, float)):
            out[name] = {"text": str(value)}
        elif _looks_like_file(value):
            entry = _file_entry(value, where, problems)
            if entry:
                out[name] = {"files": [entry]}
        elif isinstance(value, (list, tuple)):
            entries = [_file_entry(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
            out[name] = {"files": [e for e in entries if e]}
        elif isinstance(value, Mapping) and set(value) <= {"text", "files"}:
            item: dict[str, Any] = {}
            if value.get("text") is not None:
                item["text"] = str(value["text"])
            if value.get("files") is not None:
                files = value["files"]
                if not isinstance(files, (list, tuple)):
                    problems.append(f"{where}['files']: must be a list")
                else:
                    entries = [_file_entry(v, f"{where}['files'][{i}]", problems) for i, v in enumerate(files)]
                    item["files"] = [e for e in entries if e]
            out[name] = item
        else:
            problems.append(
                f"{where}: unsupported value of type {type(value).__name__}; give text, an uploaded file, "
                "a list of files, or {'text': ..., 'files': [...]}"
            )
    if problems:
        raise DocifyInputError(problems)
    return out


def validate_inputs(info: ScenarioInfo, inputs: Mapping[str, Mapping[str, Any]]) -> None:
    """Check wire-format inputs against the scenario's parameters; raise one error listing all problems."""
    problems: list[str] = []
    known = {p.variable for p in info.parameters}
    for name in inputs:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the scenario takes {sorted(known)}"
            problems.append(
                f"inputs[{name!r}]: scenario {info.scenario_code or info.scenario_id} has no such parameter{hint}"
            )
    for param in info.parameters:
        where = f"inputs[{param.variable!r}] ({param.type}{', ' + param.label if param.label else ''})"
        value = inputs.get(param.variable)
        text = None if value is None else value.get("text")
        files = None if value is None else value.get("files")
        if param.takes_files:
            if text not in (None, ""):
                problems.append(f"{where}: takes files, not text; pass a path, an upload or {{'url': ...}}")
                continue
            count = len(files or [])
            if count == 0:
                if param.required:
                    problems.append(f"{where}: required file is missing")
            elif param.type == "FILE" and count != 1:
                problems.append(f"{where}: takes exactly one file, got {count}; use a FILELIST parameter for several")
            continue
        if files:
            problems.append(f"{where}: takes text, not files")
        if text is None or text == "":
            if param.required:
                problems.append(f"{where}: required value is missing")
            continue
        if param.max_length and len(text) > param.max_length:
            problems.append(f"{where}: text is {len(text)} characters, the maximum is {param.max_length}")
        if param.type == "SELECT" and param.options is not None and text not in param.options:
            problems.append(f"{where}: {text!r} is not one of the allowed values {list(param.options)}")
    if problems:
        raise DocifyInputError(problems)


@dataclasses.dataclass
class UploadPlan:
    """Checked wire inputs whose local file sources are still to upload (``build`` swaps them in).

    ``pending`` maps a placeholder ``uploadFileOid`` in ``wire`` to the file source it stands for.
    The single-run hook uploads the sources on the worker; a batch uploads each item's just before
    the item takes a run slot (``batch.backends.DocifyBatch.prepare``): one plan, two callers.
    """

    wire: dict[str, dict[str, Any]]
    pending: dict[str, Any] = dataclasses.field(default_factory=dict)

    def build(self, uploaded: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """The wire inputs with ``uploaded[token]`` (an ``UploadedFile.to_input()``) for each placeholder."""
        out = {name: dict(value) for name, value in self.wire.items()}
        for value in out.values():
            if "files" in value:
                value["files"] = [uploaded.get(f.get("uploadFileOid", ""), f) for f in value["files"]]
        return out


def is_file_source(value: Any) -> bool:
    """A value to upload (a path, a storage path object), as opposed to an http(s) URL or an upload."""
    if isinstance(value, (str, os.PathLike)):
        return not str(value).lower().startswith(("http://", "https://"))
    return hasattr(value, "open") and hasattr(value, "name")


def plan_inputs(inputs: Mapping[str, Any] | None, scenario: ScenarioInfo, *, validate: bool = True) -> UploadPlan:
    """Shape ``inputs`` for ``scenario`` (file sources become placeholders) and check them; nothing uploaded.

    For FILE / FILELIST parameters a value may be a file source (``is_file_source``), an http(s)
    URL (passed as a remote file), an upload or its dict, or a list of these. Raises one
    ``DocifyInputError`` listing every problem (``validate``), so a bad input costs nothing.
    """
    pending: dict[str, Any] = {}
    shaped: dict[str, Any] = {}
    for name, value in (inputs or {}).items():
        param = scenario.parameter(name)
        if param is None or not param.takes_files:
            shaped[name] = value
            continue
        if isinstance(value, Mapping) and value and set(value) <= {"text", "files"} and not value.get("text"):
            # Already in wire form ({"files": [...]}, e.g. inputs prepared earlier): unwrap.
            value = value.get("files") or []
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        entries: list[Any] = []
        for item in values:
            if isinstance(item, str) and item.lower().startswith(("http://", "https://")):
                entries.append({"url": item})
            elif is_file_source(item):
                # Placeholder for validation; uploaded only when every input is fine.
                token = f"pending-upload-{len(pending)}"
                pending[token] = item
                entries.append({"uploadFileOid": token, "fileType": "DOCUMENT"})
            else:
                entries.append(item)
        shaped[name] = {"files": entries}
    wire = normalize_inputs(shaped)
    if validate:
        validate_inputs(scenario, wire)
    return UploadPlan(wire, pending)
