"""Docify's side of the shared error mapping (``docify_provider._core.http_errors``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from docify_provider._core import http_errors as core
from docify_provider._core.http_errors import parse_retry_after, server_message
from docify_provider.client.errors import DocifyError, DocifyHTTPError

if TYPE_CHECKING:
    import httpx

    from docify_provider._core.endpoints import Endpoint

__all__ = ["error_for_status", "error_for_transport", "parse_retry_after", "server_message"]


def error_for_status(status: int, body: bytes | str, headers: httpx.Headers, endpoint: Endpoint) -> DocifyHTTPError:
    """The ``DocifyError`` for a non-2xx answer; the body must already have been read."""
    return core.error_for_status(status, body, headers, endpoint, DocifyError)  # type: ignore[return-value]


def error_for_transport(exc: httpx.HTTPError, endpoint: Endpoint | str) -> DocifyError:
    """A connection-level failure as a ``DocifyError``."""
    return core.error_for_transport(exc, endpoint, DocifyError)  # type: ignore[return-value]
