"""Map httpx responses and exceptions onto the DocifyError hierarchy.

Messages are built from the endpoint path, the status and the server's own message only: never
from request headers, so the API key cannot leak into logs or tracebacks through an error.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import TYPE_CHECKING

import httpx

from docify_provider.client.errors import (
    DocifyAuthenticationError,
    DocifyBadRequestError,
    DocifyError,
    DocifyHTTPError,
    DocifyNotFoundError,
    DocifyOutcomeUnknownError,
    DocifyRateLimitedError,
    DocifyRunGatewayError,
    DocifyRunTimeoutError,
    DocifyServerError,
    DocifyTimeoutError,
    DocifyTransportError,
)
from docify_provider.client.protocol import DocifyProtocol

if TYPE_CHECKING:
    from docify_provider.client.protocol import Endpoint

_MAX_MESSAGE = 500
#: Statuses that may come back after a run was started (see ``DocifyRunGatewayError``).
_RUN_OUTCOME_UNKNOWN = frozenset({500, 502, 504})


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def server_message(body: bytes | str) -> str | None:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        message = DocifyProtocol.error_message(json.loads(text))
    except ValueError:
        message = None
    message = message or text.strip() or None
    if message and len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "…"
    return message


def error_for_status(status: int, body: bytes | str, headers: httpx.Headers, endpoint: Endpoint) -> DocifyHTTPError:
    """The typed error for a non-2xx answer; the body must already have been read."""
    said = server_message(body)
    where = str(endpoint)
    detail = f": {said}" if said else ""
    if status == 400:
        return DocifyBadRequestError(
            f"Docify rejected the request{detail}", status_code=status, endpoint=where, server_message=said
        )
    if status in (401, 403):
        hint = (
            "check the API key in the connection" if status == 401 else "the API key lacks permission for this scenario"
        )
        return DocifyAuthenticationError(
            f"Docify refused the API key ({hint}){detail}", status_code=status, endpoint=where, server_message=said
        )
    if status == 404:
        what = (
            "Attachment not found (its link may have expired)"
            if endpoint.name == "download"
            else "Not found: check the connection's base URL"
        )
        return DocifyNotFoundError(
            f"{what}{detail}",
            status_code=status,
            endpoint=where,
            server_message=said,
        )
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return DocifyRateLimitedError(
            f"Docify rate limit reached{detail}"
            + (f" (Retry-After {retry_after:.0f}s)" if retry_after is not None else ""),
            status_code=status,
            endpoint=where,
            server_message=said,
            retry_after=retry_after,
        )
    if status in _RUN_OUTCOME_UNKNOWN and not getattr(endpoint, "repeatable", True):
        return DocifyRunGatewayError(
            f"Docify answered HTTP {status} to the run request{detail}. The run may still have started and "
            "been billed behind the gateway, so it is not re-sent automatically.",
            status_code=status,
            endpoint=where,
            server_message=said,
        )
    return DocifyServerError(
        f"Docify answered HTTP {status}{detail}", status_code=status, endpoint=where, server_message=said
    )


def error_for_transport(exc: httpx.HTTPError, endpoint: Endpoint | str) -> DocifyError:
    """A connection-level failure as a typed error.

    For a run endpoint, a failure after the request may have been sent becomes
    ``DocifyOutcomeUnknownError``: the run may have started and been billed.
    """
    where = str(endpoint)
    sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol))
    kind = type(exc).__name__
    repeatable = getattr(endpoint, "repeatable", True)
    if sent and not repeatable:
        unknown = DocifyRunTimeoutError if isinstance(exc, httpx.TimeoutException) else DocifyOutcomeUnknownError
        return unknown(
            f"The run request was sent but no final answer arrived ({kind}: {exc}). The run may have "
            "started and been billed; it is not re-sent automatically.",
            endpoint=where,
        )
    cls = DocifyTimeoutError if isinstance(exc, httpx.TimeoutException) else DocifyTransportError
    state = "before the request was sent" if not sent else "after the request was sent"
    return cls(f"Connection to Docify failed {state} ({kind}: {exc})", endpoint=where, request_sent=sent)
