"""The error a request handler raises to send a JSON ``{"code", "message"}`` error response."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server rejects; becomes ``{"code": status, "message": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
