"""The OpenAPI's error answers (B3, B2, B9), apart from the handler that raises them.

An ``ApiError`` is answered as the ErrorBody ``{code, message, status, hint?, details?}``; a
``RawError`` as its body verbatim (the per-token 429 and the device flow's RFC 8628 answers are
not ErrorBodies). Kept out of ``handler`` so that the URL side (``routes``) can refuse a bad
query parameter the way the handler refuses a bad body.
"""

from __future__ import annotations

from typing import Any

from docify_provider.testing.errors import RequestError

__all__ = ["ApiError", "RawError", "invalid_request", "unprocessable"]


class ApiError(RequestError):
    """An ErrorBody answer with optional ``hint`` and ``details``."""

    def __init__(
        self,
        message: str,
        status: int,
        code: str | None = None,
        *,
        hint: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, status, code)
        self.hint = hint
        self.details = details


class RawError(RequestError):
    """A non-ErrorBody answer: the raw 429 of the bearer rate limit, device-flow errors."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(str(body), status)
        self.body = body
        self.headers = headers or {}


def invalid_request(*details: tuple[str, list[Any], str]) -> ApiError:
    """422 ``invalid_param`` "Request validation failed" with pydantic-style ``details``."""
    items = [{"type": type_, "loc": loc, "msg": msg} for type_, loc, msg in details]
    return ApiError("Request validation failed", 422, "invalid_param", details=items)


def unprocessable(message: str) -> ApiError:
    """A 422 whose message is a machine-readable word (``app_mode_mismatch``, ...)."""
    return ApiError(message, 422, "invalid_param")
