"""Docify's upload rules: which file types it takes and how large (on the shared ``_core.files``).

Opening sources lazily, streaming them, ``local_fs_path`` and ``safe_file_name`` are shared by
every backend and live in ``docify_provider._core.files`` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docify_provider._core.files import (
    MAX_NAME_BYTES,
    FileSource,
    local_fs_path,
    open_file_source,
    safe_file_name,
)
from docify_provider.docify.errors import DocifyError, DocifyFileError
from docify_provider.docify.inputs import (
    DOCUMENT_EXTENSIONS,
    IMAGE_EXTENSIONS,
    infer_file_type,
    max_bytes_for,
)
from docify_provider.docify.models import FileType

__all__ = ["MAX_NAME_BYTES", "UploadSource", "local_fs_path", "open_upload_source", "safe_file_name"]


@dataclass
class UploadSource(FileSource):
    """A file ready to upload to Docify: ``FileSource`` plus its Docify file type."""

    file_type: FileType = FileType.DOCUMENT


def open_upload_source(
    source: Any, *, file_name: str | None = None, file_type: FileType | str | None = None
) -> UploadSource:
    """Describe ``source`` for upload and check it against Docify's documented limits.

    Raises ``DocifyFileError`` (naming the file and the limit) before anything is sent.
    """
    opened = open_file_source(source, file_name=file_name, errors=DocifyError)
    name, size = opened.name, opened.size
    resolved: FileType | None
    if isinstance(file_type, FileType):
        resolved = file_type
    elif file_type:
        if str(file_type).upper() not in FileType.__members__:
            raise DocifyFileError([f"{name!r}: file_type must be IMAGE or DOCUMENT, got {file_type!r}"])
        resolved = FileType(str(file_type).upper())
    else:
        resolved = infer_file_type(name, None)
    if resolved is None:
        raise DocifyFileError(
            [
                f"{name!r}: unsupported file type; Docify takes images ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
                f"and documents ({', '.join(sorted(DOCUMENT_EXTENSIONS))}), or pass file_type= explicitly"
            ]
        )
    limit = max_bytes_for(resolved)
    if size is not None and size > limit:
        raise DocifyFileError(
            [f"{name!r}: {size} bytes is over Docify's {limit // (1024 * 1024)} MB limit for {resolved.value.lower()}s"]
        )
    if size == 0:
        raise DocifyFileError([f"{name!r}: the file is empty"])
    return UploadSource(
        name=name, size=size, mime_type=opened.mime_type, opener=opened.opener, owned=opened.owned, file_type=resolved
    )
