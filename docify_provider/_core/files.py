"""Files in and out, for every backend: upload sources opened lazily and streamed, names made safe.

Uploads accept a local path, bytes, a binary file object, or anything path-like with ``open()``
(an Airflow ``ObjectStoragePath`` / ``UPath``). The file is never read whole: httpx streams it
into the multipart body in 64 KiB chunks, so a 50 MB upload costs a few MB of memory. Which types
and sizes a service accepts is the backend's (``docify.files`` for Docify, ``dify.inputs`` for Dify).
"""

from __future__ import annotations

import io
import mimetypes
import os
import posixpath
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from docify_provider._core.errors import FileError, ProviderError, error_class

MAX_NAME_BYTES = 200

#: ``scheme://`` at the start of a string: a storage URL (``s3://``, ``file://``…), not a local path.
_STORAGE_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


def local_fs_path(value: Any) -> str | None:
    """The local path ``value`` names as a plain path, or ``None`` for a storage path object.

    A string is a local path unless it is a storage URL (``file://`` is stripped). A path object
    with a ``protocol`` (an ``ObjectStoragePath`` / ``UPath``, ``file://`` ones included) is
    written through its own API, so that what is returned has the type the caller gave. Asking
    ``isinstance(value, os.PathLike)`` is not enough: the universal-pathlib releases that Airflow
    3.0 and 3.1 ship make every ``ObjectStoragePath`` (``s3://``, ``memory://``…) a
    ``pathlib.Path`` subclass, so an ``s3://bucket/`` destination would land under
    ``./s3:/bucket/`` on the worker's disk.
    """
    if isinstance(value, str):
        if value.startswith("file://"):
            return value[len("file://") :]
        return None if _STORAGE_URL.match(value) else value
    if hasattr(value, "protocol") or not isinstance(value, os.PathLike):
        return None
    return os.fspath(value)


@dataclass
class FileSource:
    """A file ready to upload: its name, size and MIME type known, its bytes not yet read."""

    name: str
    size: int | None
    mime_type: str
    opener: Callable[[], IO[bytes]]
    #: False for a file object the caller passed in: we read it but leave closing to them.
    owned: bool = True


def _size_of_fileobj(fileobj: IO[bytes]) -> int | None:
    """The whole file's size: httpx seeks to 0 before sending, so the position does not matter."""
    try:
        return os.fstat(fileobj.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        here = fileobj.tell()
        end = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(here)
        return end
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _stat_size(path: Any) -> int | None:
    try:
        st = path.stat()
    except (OSError, AttributeError, NotImplementedError):
        return None
    size = getattr(st, "st_size", None)
    if size is None and isinstance(st, dict):
        size = st.get("size")
    return None if size is None else int(size)


def open_file_source(source: Any, *, file_name: str | None, errors: type[ProviderError]) -> FileSource:
    """Describe ``source`` for upload without reading it: name, size, MIME type and an opener.

    Raises the backend's ``FileError`` (from ``errors``, its error root) naming the file before
    anything is sent; each backend then checks the file against its own type and size rules.
    """
    bad = error_class(errors, FileError)
    opener: Callable[[], IO[bytes]]
    owned = True
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = file_name or "upload.bin"
        size: int | None = len(data)
        opener = lambda: io.BytesIO(data)  # noqa: E731
    elif isinstance(source, (str, os.PathLike)) and not hasattr(source, "open"):
        path = os.fspath(source)
        if path.startswith("file://"):
            path = path[len("file://") :]
        elif _STORAGE_URL.match(path):
            raise bad([f"{path!r}: storage URLs are resolved by the hook (ObjectStoragePath); the client takes paths"])
        if not os.path.isfile(path):
            raise bad([f"{path!r}: no such file"])
        name = file_name or os.path.basename(path)
        size = os.path.getsize(path)
        opener = lambda: open(path, "rb")  # noqa: E731, SIM115
    elif hasattr(source, "open") and hasattr(source, "name"):
        # ObjectStoragePath / UPath / pathlib.Path: open lazily, once per attempt.
        if hasattr(source, "is_file") and not source.is_file():
            raise bad([f"{source}: no such file"])
        name = file_name or str(source.name)
        size = _stat_size(source)
        opener = lambda: source.open("rb")  # noqa: E731
    elif hasattr(source, "read"):
        fileobj = source
        name = file_name or os.path.basename(str(getattr(source, "name", "") or "")) or "upload.bin"
        size = _size_of_fileobj(fileobj)
        # The caller owns this object: it is read from its start (httpx seeks to 0 before
        # every attempt) and never closed by us.
        opener = lambda: fileobj  # noqa: E731
        owned = False
    else:
        raise bad(
            [
                f"Cannot upload a {type(source).__name__}: "
                "give a path, bytes, a binary file object or an ObjectStoragePath"
            ]
        )

    mime_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return FileSource(name=name, size=size, mime_type=mime_type, opener=opener, owned=owned)


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
#: Unicode categories never kept in a name: controls (C0 and C1), format characters (bidi overrides
#: such as U+202E that make "report\u202ecsv.exe" display as "reportexe.csv", zero-width ones) and
#: lone surrogates (not encodable as UTF-8).
_INVISIBLE = frozenset({"Cc", "Cf", "Cs"})
#: Names Windows reserves for devices, with any extension ("CON", "nul.csv"): a file called that
#: cannot be opened on Windows or on SMB shares that mirror its rules.
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"123456789", "\u00b9", "\u00b2", "\u00b3")}
)


def safe_file_name(name: str, *, default: str = "attachment") -> str:
    """A file name that stays inside its folder on any file system or object store.

    Strips directories (``../``, absolute paths, backslashes), control and invisible format
    characters (NUL, bidi overrides) and characters Windows or object stores reject, normalises
    Unicode, refuses "." and "..", prefixes Windows device names ("CON" -> "_CON") and limits the
    length to 200 bytes while keeping the extension.
    """
    name = unicodedata.normalize("NFC", str(name or ""))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join("_" if unicodedata.category(c) in _INVISIBLE else c for c in name)
    name = _UNSAFE.sub("_", name).strip(" .")
    if not name or set(name) <= {"_", "."}:
        name = default
    if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        name = "_" + name
    stem, ext = posixpath.splitext(name)
    if len(ext.encode()) > 20:
        stem, ext = name, ""
    while len((stem + ext).encode()) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return (stem + ext) or default
