"""Docify's errors: one class per decision (see ``docify_provider._core.errors``), under ``DocifyError``.

Each class is the core decision class first, then its Docify parent, so ``except DocifyError``,
``except OutcomeUnknownError`` (any backend) and ``except DocifyOutcomeUnknownError`` all work, and
the shared wire code raises Docify's class for a decision through ``error_class(DocifyError, ...)``.
Every error carries the HTTP status and the endpoint path when there was one, and never the API key.
"""

from __future__ import annotations

from docify_provider._core import errors as core


class DocifyError(core.ProviderError, backend_root=True):
    """Base of every error raised by the Docify client, hook and operators."""

    label = "Docify"
    resource = "scenario"
    size_field = "fileSize"


# --- Caller mistakes, raised before any point is spent -------------------------------------------


class DocifyConfigError(core.ConfigError, DocifyError):
    """The connection or client configuration is unusable (bad base URL, plain http, bad extras)."""


class DocifyInputError(core.InputError, DocifyError):
    """Inputs do not fit the scenario; ``problems`` lists every one of them, not just the first."""


class DocifyFileError(core.FileError, DocifyInputError):
    """A file cannot be uploaded: unsupported type, over the documented size limit, unreadable."""


# --- The server said no --------------------------------------------------------------------------


class DocifyHTTPError(core.HTTPStatusError, DocifyError):
    """The server answered with an error status; ``server_message`` is what it said."""


class DocifyBadRequestError(core.BadRequestError, DocifyHTTPError):
    """HTTP 400: the server rejected the request's parameters. Not retried."""


class DocifyAuthenticationError(core.AuthenticationError, DocifyHTTPError):
    """HTTP 401 or 403: the API key is invalid or lacks permission. Not retried."""


class DocifyNotFoundError(core.NotFoundError, DocifyHTTPError):
    """HTTP 404: wrong base URL or a resource that does not exist. Not retried."""


class DocifyRateLimitedError(core.RateLimitedError, DocifyHTTPError):
    """HTTP 429; ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""


class DocifyRunNotStartedError(core.RunNotStartedError, DocifyRateLimitedError):
    """HTTP 429 to a run request: Docify turned the run away before starting it; safe to send again."""


class DocifyServerError(core.ServerError, DocifyHTTPError):
    """HTTP 5xx (or another unexpected status): the service failed."""


# --- The network or the stream failed ------------------------------------------------------------


class DocifyTransportError(core.TransportError, DocifyError):
    """The connection failed or timed out; ``request_sent`` tells whether it may have reached Docify."""


class DocifyTimeoutError(core.RequestTimeoutError, DocifyTransportError):
    """Connect, read or idle timeout."""


class DocifyProtocolError(core.ProtocolError, DocifyError):
    """The server answered with something that is not the documented format."""


class DocifyOutcomeUnknownError(core.OutcomeUnknownError, DocifyError):
    """A run request may have reached Docify but no final answer arrived; never re-sent automatically.

    Docify has no run-status endpoint, so nothing can be asked afterwards: ``session_id`` /
    ``run_id`` name what was seen, ``events_seen`` the stream event types received.
    """


class DocifyStreamIncompleteError(core.StreamIncompleteError, DocifyOutcomeUnknownError):
    """The event stream ended (cleanly or not) without a COMPLETE or ERROR event."""


class DocifyRunTimeoutError(core.RunTimeoutError, DocifyTimeoutError, DocifyOutcomeUnknownError):
    """A run request timed out after it may have reached Docify (no answer, or a stream idle)."""


class DocifyRunGatewayError(core.RunGatewayError, DocifyServerError, DocifyOutcomeUnknownError):
    """HTTP 500, 502 or 504 in answer to a run request: the run may still have started and been billed."""


# --- The run itself failed -----------------------------------------------------------------------


class DocifyRunFailedError(core.RunFailedError, DocifyError):
    """The scenario ran and failed: COMPLETE with ``isSuccess`` false, or an ERROR event.

    The run was billed; ``result`` holds the server's run result when it sent one.
    """


class DocifyUnsafeDownloadError(core.UnsafeDownloadError, DocifyError):
    """An attachment could not be stored safely: size mismatch, over the limit, untrusted redirect."""


__all__ = [
    "DocifyAuthenticationError",
    "DocifyBadRequestError",
    "DocifyConfigError",
    "DocifyError",
    "DocifyFileError",
    "DocifyHTTPError",
    "DocifyInputError",
    "DocifyNotFoundError",
    "DocifyOutcomeUnknownError",
    "DocifyProtocolError",
    "DocifyRateLimitedError",
    "DocifyRunFailedError",
    "DocifyRunGatewayError",
    "DocifyRunNotStartedError",
    "DocifyRunTimeoutError",
    "DocifyServerError",
    "DocifyStreamIncompleteError",
    "DocifyTimeoutError",
    "DocifyTransportError",
    "DocifyUnsafeDownloadError",
]
