"""File types the Docify upload endpoint accepts and their size limits.

The real service accepts images up to 10 MiB and documents up to 50 MiB and classifies the
upload as IMAGE or DOCUMENT by its extension; clients must see the same verdicts.
"""

from __future__ import annotations

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff"})
DOCUMENT_EXTENSIONS = frozenset({"pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "txt", "csv", "md", "html", "eml"})
MIB = 1024 * 1024
SIZE_LIMITS = {"IMAGE": 10 * MIB, "DOCUMENT": 50 * MIB}


def extension(name: str) -> str:
    """Lower-case extension without the dot ("" when there is none)."""
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base.lstrip(".") else ""


def file_type_for(name: str) -> str | None:
    """``"IMAGE"``, ``"DOCUMENT"`` or None (unsupported) for a file name."""
    ext = extension(name)
    if ext in IMAGE_EXTENSIONS:
        return "IMAGE"
    if ext in DOCUMENT_EXTENSIONS:
        return "DOCUMENT"
    return None
