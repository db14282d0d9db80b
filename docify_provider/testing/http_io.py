"""Low-level HTTP/1.1 body I/O: request bodies read incrementally, chunked responses.

``http.server`` gives raw socket files; uploads must be parsed while they arrive (never held
whole in memory) and event streams must reach the client one HTTP chunk per event, so both
directions are handled explicitly here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from docify_provider.testing.errors import RequestError

READ_SIZE = 64 * 1024


class Readable(Protocol):
    """The buffered socket file ``http.server`` gives handlers (``rfile``)."""

    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


class ClientGone(Exception):
    """The client closed the connection while the server was reading or writing."""


class BodyReader:
    """Reads a request body declared by ``Content-Length`` or ``Transfer-Encoding: chunked``."""

    def __init__(self, rfile: Readable, content_length: str | None, transfer_encoding: str | None) -> None:
        self._rfile = rfile
        self._chunked = "chunked" in (transfer_encoding or "").lower()
        self._remaining = 0
        self._done = False
        self.bytes_read = 0
        if not self._chunked:
            try:
                self._remaining = int(content_length or 0)
            except ValueError:
                raise RequestError("Invalid Content-Length header") from None
            if self._remaining < 0:
                raise RequestError("Invalid Content-Length header")
            self._done = self._remaining == 0

    @property
    def done(self) -> bool:
        """True once the whole body has been consumed."""
        return self._done

    def _read_exact(self, n: int) -> bytes:
        data = self._rfile.read(n)
        if len(data) < n:
            raise ClientGone("connection closed while reading the request body")
        return data

    def _next_chunk_size(self) -> int:
        line = self._rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise ClientGone("connection closed inside a chunked request body")
        try:
            return int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise RequestError("Malformed chunked request body") from None

    def read(self, size: int = READ_SIZE) -> bytes:
        """Return up to ``size`` bytes of body, or b"" at the end."""
        if self._done:
            return b""
        if self._chunked and self._remaining == 0:
            self._remaining = self._next_chunk_size()
            if self._remaining == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._done = True
                return b""
        data = self._read_exact(min(size, self._remaining))
        self._remaining -= len(data)
        self.bytes_read += len(data)
        if self._remaining == 0:
            if self._chunked:
                self._read_exact(2)  # CRLF after chunk data
            else:
                self._done = True
        return data

    def __iter__(self) -> Iterator[bytes]:
        while data := self.read():
            yield data

    def read_all(self, limit: int) -> bytes:
        """The whole body; :class:`RequestError` 413 when it exceeds ``limit`` bytes."""
        parts = []
        for data in self:
            parts.append(data)
            if self.bytes_read > limit:
                raise RequestError(f"Request body exceeds {limit} bytes", status=413)
        return b"".join(parts)

    def drain(self, limit: int) -> bool:
        """Discard the rest of the body (up to ``limit`` bytes); True when fully consumed."""
        while self.read():
            if self.bytes_read > limit:
                return False
        return True


def chunk(data: bytes) -> bytes:
    """Frame ``data`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
