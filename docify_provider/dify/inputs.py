"""Checking a run's inputs against the app's ``/parameters`` before anything is uploaded or run.

``plan_inputs(inputs, parameters)`` reads every value, collects every problem and raises ONE
``DifyInputError`` naming them all, or returns an ``InputPlan``: what must be uploaded first
(``uploads``) and how to build the wire ``inputs`` once it is (``build(uploaded)``).

File variables take: a local path, bytes or an object with ``open`` (an ``ObjectStoragePath``)
-> uploaded; an ``http(s)://`` URL -> ``remote_url``; an ``UploadedFile``, the upload operator's
XCom dict (``UploadedFile.as_dict()``) or a ready mapping with ``transfer_method`` -> as is; a list
of those for a ``file-list``. The file type is Dify's, from the extension (document, image,
audio, video; anything else ``custom``). As on the server, ``allowed_file_extensions`` applies to
``custom`` files (a known type is checked against ``allowed_file_types``).
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from docify_provider._core.errors import FileError
from docify_provider._core.files import FileSource, local_fs_path, open_file_source
from docify_provider.dify.errors import DifyError, DifyInputError
from docify_provider.dify.models import AppParameters, InputVariable, UploadedFile, file_type_for_extension

__all__ = ["InputPlan", "PendingUpload", "plan_inputs"]

MIB = 1024 * 1024
_TEXT_TYPES = frozenset({"text-input", "paragraph", "select"})


@dataclass(frozen=True)
class PendingUpload:
    """A file to upload before the run: ``source`` for ``variable`` (``index`` in a file-list)."""

    variable: str
    index: int | None
    source: Any
    file_name: str
    file_type: str
    size: int | None


@dataclass
class InputPlan:
    """Checked inputs: ``uploads`` to do first, then ``build(uploaded)`` gives the wire ``inputs``."""

    values: dict[str, Any]
    uploads: list[PendingUpload] = field(default_factory=list)

    def build(self, uploaded: Sequence[UploadedFile | Mapping[str, Any]] = ()) -> dict[str, Any]:
        """The wire inputs, with ``uploaded[i]`` (an ``UploadedFile``) in place of ``uploads[i]``."""
        if len(uploaded) != len(self.uploads):
            raise DifyInputError([f"{len(self.uploads)} file(s) to upload, but {len(uploaded)} uploaded"])
        out = {k: list(v) if isinstance(v, list) else v for k, v in self.values.items()}
        for pending, done in zip(self.uploads, uploaded, strict=True):
            file = done if isinstance(done, UploadedFile) else UploadedFile.from_api(dict(done))
            mapping = file.as_input(pending.file_type)
            if pending.index is None:
                out[pending.variable] = mapping
            else:
                out[pending.variable][pending.index] = mapping
        return out


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, (list, tuple)) and not value)


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def _url_name(url: str) -> str:
    return posixpath.basename(unquote(urlsplit(url).path)) or url


class _Checker:
    def __init__(self, parameters: AppParameters) -> None:
        self.parameters = parameters
        self.problems: list[str] = []
        self.uploads: list[PendingUpload] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)

    # -- scalars ------------------------------------------------------------------------------

    def scalar(self, var: InputVariable, value: Any) -> Any:
        name = var.variable
        if var.type in _TEXT_TYPES:
            if not isinstance(value, str):
                self.problem(f"{name!r} must be a string, got {type(value).__name__}")
                return value
            if var.type == "select" and var.options and value not in var.options:
                self.problem(f"{name!r} must be one of {var.options}, got {value!r}")
            if var.max_length and len(value) > var.max_length:
                self.problem(f"{name!r} is {len(value)} characters long, over its max_length {var.max_length}")
            return value
        if var.type == "number":
            if isinstance(value, bool):
                self.problem(f"{name!r} must be a number, got a boolean")
                return value
            if isinstance(value, (int, float)):
                if isinstance(value, float) and not math.isfinite(value):
                    self.problem(f"{name!r} must be a finite number, got {value!r}")
                return value
            try:
                number = float(str(value))
            except ValueError:
                self.problem(f"{name!r} must be a number, got {value!r}")
                return value
            if not math.isfinite(number):
                self.problem(f"{name!r} must be a finite number, got {value!r}")
            return value
        if var.type == "checkbox":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            self.problem(f"{name!r} must be true or false, got {value!r}")
            return value
        if var.type == "json_object":
            parsed = value
            if isinstance(value, str):
                try:
                    parsed = json.loads(value)
                except ValueError as exc:
                    self.problem(f"{name!r} must be a JSON object, and its text is not JSON ({exc})")
                    return value
            if not isinstance(parsed, dict):
                self.problem(f"{name!r} must be a JSON object, got {type(parsed).__name__}")
            return parsed
        return value  # external_data_tool and types added later: the server decides

    # -- files --------------------------------------------------------------------------------

    def file_type_ok(self, var: InputVariable, where: str, name: str, file_type: str) -> None:
        allowed = var.allowed_file_types
        ext = posixpath.splitext(name)[1].lower()
        if file_type == "custom":
            exts = var.allowed_file_extensions
            if exts and ext not in exts and ext.lstrip(".") not in exts:
                self.problem(f"{where}: {name!r} has extension {ext or '(none)'!r}, not one of {exts}")
            elif allowed and "custom" not in allowed and not exts:
                self.problem(
                    f"{where}: {name!r} is not a {', '.join(allowed)} file (unknown extension {ext or '(none)'!r})"
                )
        elif allowed and file_type not in allowed:
            self.problem(f"{where}: {name!r} is a {file_type} file; {var.variable!r} takes {', '.join(allowed)}")

    def method_ok(self, var: InputVariable, where: str, method: str) -> None:
        methods = var.allowed_file_upload_methods
        if methods and method not in methods:
            self.problem(f"{where}: transfer method {method} is not allowed (only {', '.join(methods)})")

    def size_ok(self, where: str, name: str, file_type: str, size: int | None) -> None:
        limit = self.parameters.size_limit_mb(file_type)
        if size is not None and limit is not None and size > limit * MIB:
            self.problem(f"{where}: {name!r} is {size} bytes, over Dify's {limit:g} MB limit for {file_type} files")
        if size == 0:
            self.problem(f"{where}: {name!r} is empty")

    def one_file(self, var: InputVariable, value: Any, index: int | None) -> Any:
        where = repr(var.variable) if index is None else f"{var.variable!r}[{index}]"
        if isinstance(value, UploadedFile):
            value = value.as_dict()
        if isinstance(value, Mapping):
            if "transfer_method" in value:
                mapping = dict(value)
                method = str(mapping["transfer_method"])
                name = str(mapping.get("filename") or _url_name(str(mapping.get("url") or "")) or "")
                mapping.setdefault("type", file_type_for_extension(name) if name else "custom")
                self.method_ok(var, where, method)
                return mapping
            if value.get("id") and ("name" in value or "extension" in value):
                file = UploadedFile.from_api(dict(value))
                file_type = file_type_for_extension(file.extension or file.name)
                self.file_type_ok(var, where, file.name or file.id, file_type)
                self.method_ok(var, where, "local_file")
                return file.as_input(file_type)
            self.problem(f"{where}: a mapping needs 'transfer_method' (or be an uploaded file with 'id')")
            return value
        if _is_url(value):
            name = _url_name(value)
            file_type = file_type_for_extension(name)
            if file_type == "custom" and len(var.allowed_file_types) == 1 and var.allowed_file_types[0] != "custom":
                file_type = var.allowed_file_types[0]  # a URL without an extension: say what it should be
            else:
                self.file_type_ok(var, where, name, file_type)
            self.method_ok(var, where, "remote_url")
            return {"transfer_method": "remote_url", "url": value, "type": file_type}
        if isinstance(value, str) and local_fs_path(value) is None:
            self.problem(f"{where}: {value!r} is a storage URL; pass an ObjectStoragePath, a local path or a URL")
            return value
        try:
            source: FileSource = open_file_source(value, file_name=None, errors=DifyError)
        except FileError as exc:
            self.problems.extend(f"{where}: {p}" for p in exc.problems)
            return value
        file_type = file_type_for_extension(source.name)
        self.file_type_ok(var, where, source.name, file_type)
        self.method_ok(var, where, "local_file")
        self.size_ok(where, source.name, file_type, source.size)
        self.uploads.append(PendingUpload(var.variable, index, value, source.name, file_type, source.size))
        return None  # filled in by InputPlan.build

    def files(self, var: InputVariable, value: Any) -> Any:
        if var.type == "file":
            if isinstance(value, (list, tuple)):
                self.problem(f"{var.variable!r} takes one file, got a list of {len(value)}")
                return value
            return self.one_file(var, value, None)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        limit = var.max_length
        if limit and len(items) > limit:
            self.problem(f"{var.variable!r} has {len(items)} files, over its max_length {limit}")
        upload_limit = self.parameters.workflow_file_upload_limit
        if upload_limit and len(items) > upload_limit:
            self.problem(
                f"{var.variable!r} has {len(items)} files, over Dify's workflow_file_upload_limit {upload_limit}"
            )
        return [self.one_file(var, item, i) for i, item in enumerate(items)]


def plan_inputs(inputs: Mapping[str, Any] | None, parameters: AppParameters) -> InputPlan:
    """Check ``inputs`` against ``parameters``; raise ONE ``DifyInputError`` naming every problem."""
    inputs = dict(inputs or {})
    check = _Checker(parameters)
    known = {v.variable for v in parameters.user_input_form}
    for name in inputs:
        if name not in known:
            check.problem(f"{name!r} is not an input of this app (its inputs: {', '.join(sorted(known)) or 'none'})")
    values: dict[str, Any] = {}
    for var in parameters.user_input_form:
        value = inputs.get(var.variable)
        if _empty(value):
            if var.required:
                check.problem(f"{var.variable!r} ({var.label}) is required")
            elif value is not None and var.variable in inputs and not var.takes_files:
                values[var.variable] = value
            continue
        values[var.variable] = check.files(var, value) if var.takes_files else check.scalar(var, value)
    if check.problems:
        raise DifyInputError(check.problems)
    return InputPlan(values=values, uploads=check.uploads)
