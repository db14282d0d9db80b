"""Immutable records of what the emulator saw, for test assertions.

Records carry a key *fingerprint* (see :func:`docify_provider.testing.keys.fingerprint`),
never an API key, so they can be printed in failure reports safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request: ``status`` is what was sent (None when the connection was dropped)."""

    method: str
    path: str
    endpoint: str | None
    has_auth: bool
    key_fingerprint: str | None
    user_agent: str | None
    host: str | None
    status: int | None


@dataclass(frozen=True)
class UploadRecord:
    """One accepted upload; ``head`` is the first 64 KiB of the content."""

    key_fingerprint: str
    user: str
    file_name: str
    size: int
    file_type: str
    sha256: str
    upload_file_oid: str
    content_type: str | None
    head: bytes = field(repr=False)


@dataclass(frozen=True)
class DownloadRecord:
    """One attachment download attempt that reached a known token."""

    token: str
    file_name: str
    size: int
    has_auth: bool
    host: str | None
    status: int


@dataclass(frozen=True)
class StoredAttachment:
    """A produced attachment, served by ``GET <prefix>/download/<token>/<name>``.

    With ``generated_size`` set, ``content`` is empty and the body is that many zero bytes,
    generated while it is sent (the ``attachment_size`` fault: multi-GB bodies, no storage).
    """

    token: str
    name: str
    content: bytes = field(repr=False)
    generated_size: int | None = None

    @property
    def size(self) -> int:
        """The number of bytes a download of this attachment serves."""
        return len(self.content) if self.generated_size is None else self.generated_size
