"""The error a request handler raises to send a JSON error response.

The Docify emulator answers ``{"code": status, "message": ...}``; the Dify emulator answers
``{"code": "<snake_code>", "message": ..., "status": status}`` (``code`` when given, else the
snake-cased reason phrase of the status).
"""

from __future__ import annotations


class RequestError(Exception):
    """A request the server rejects with ``status``, ``message`` and an optional ``code``."""

    def __init__(self, message: str, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
