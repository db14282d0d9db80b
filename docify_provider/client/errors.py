"""One exception hierarchy for everything the Docify wire layer can raise.

Why one hierarchy: DAG authors, retry policies and our own operators decide what to do from the
*type* of a failure (fail at once, retry later, never re-send), so each distinct decision gets its
own class. Every error carries the HTTP status and the endpoint path when there was one, and never
the API key: messages are built only from the path, the status and the server's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class DocifyError(Exception):
    """Base of every error raised by the Docify client, hook and operators."""

    def __init__(self, message: str, *, status_code: int | None = None, endpoint: str | None = None):
        self.message = message
        self.status_code = status_code
        self.endpoint = endpoint
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.endpoint:
            where.append(self.endpoint)
        if self.status_code is not None:
            where.append(f"HTTP {self.status_code}")
        return f"{self.message} [{', '.join(where)}]" if where else self.message

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Exceptions cross process boundaries (triggerer -> worker, multiprocessing in tests); keep
        # every attribute instead of only ``args``.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[DocifyError], state: dict[str, object]) -> DocifyError:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    Exception.__init__(obj, obj._render())
    return obj


# --- Caller mistakes, raised before any point is spent -------------------------------------------


class DocifyConfigError(DocifyError):
    """The connection or client configuration is unusable (bad base URL, plain http, bad extras)."""


class DocifyInputError(DocifyError, ValueError):
    """Inputs do not fit the scenario; ``problems`` lists every one of them, not just the first."""

    def __init__(self, problems: Sequence[str], *, endpoint: str | None = None):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid Docify inputs ({len(self.problems)} problem(s)):\n{lines}", endpoint=endpoint)


class DocifyFileError(DocifyInputError):
    """A file cannot be uploaded: unsupported type, over the documented size limit, unreadable."""


# --- The server said no --------------------------------------------------------------------------


class DocifyHTTPError(DocifyError):
    """The server answered with an error status; ``server_message`` is what it said."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        endpoint: str,
        server_message: str | None = None,
    ):
        self.server_message = server_message
        super().__init__(message, status_code=status_code, endpoint=endpoint)


class DocifyBadRequestError(DocifyHTTPError):
    """HTTP 400: the server rejected the request's parameters. Not retried."""


class DocifyAuthenticationError(DocifyHTTPError):
    """HTTP 401 or 403: the API key is invalid or lacks permission. Not retried."""


class DocifyNotFoundError(DocifyHTTPError):
    """HTTP 404: wrong base URL or a resource that does not exist. Not retried."""


class DocifyRateLimitedError(DocifyHTTPError):
    """HTTP 429; ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        endpoint: str,
        server_message: str | None = None,
        retry_after: float | None = None,
    ):
        self.retry_after = retry_after
        super().__init__(message, status_code=status_code, endpoint=endpoint, server_message=server_message)


class DocifyServerError(DocifyHTTPError):
    """HTTP 5xx (or another unexpected status): the service failed."""


# --- The network or the stream failed ------------------------------------------------------------


class DocifyTransportError(DocifyError):
    """The connection failed or timed out.

    ``request_sent`` tells whether the request may have reached the server: when False (the
    connection was never established) a retry cannot cause a second run.
    """

    def __init__(self, message: str, *, endpoint: str | None = None, request_sent: bool = True):
        self.request_sent = request_sent
        super().__init__(message, endpoint=endpoint)


class DocifyTimeoutError(DocifyTransportError):
    """Connect, read or idle timeout."""


class DocifyProtocolError(DocifyError):
    """The server answered with something that is not the documented format."""


class DocifyOutcomeUnknownError(DocifyError):
    """A run request may have reached the server but no final answer arrived.

    The run may have been started and billed. Re-sending would risk paying twice, so this is never
    retried automatically. ``session_id`` / ``run_id`` name what was seen, ``events_seen`` the stream
    event types received before the answer stopped.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status_code: int | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        events_seen: Sequence[str] = (),
    ):
        self.session_id = session_id
        self.run_id = run_id
        self.events_seen = list(events_seen)
        super().__init__(message, endpoint=endpoint, status_code=status_code)


class DocifyStreamIncompleteError(DocifyOutcomeUnknownError):
    """The event stream ended (cleanly or not) without a COMPLETE or ERROR event."""


class DocifyRunTimeoutError(DocifyTimeoutError, DocifyOutcomeUnknownError):
    """A run request timed out after it may have reached the server (no answer, or a stream idle).

    Both a ``DocifyTimeoutError`` and a ``DocifyOutcomeUnknownError``: the run may have started
    and been billed, so it is never re-sent automatically (``request_sent`` is always True).
    """

    def __init__(self, message: str, **kwargs: Any):
        DocifyOutcomeUnknownError.__init__(self, message, **kwargs)
        self.request_sent = True


class DocifyRunGatewayError(DocifyServerError, DocifyOutcomeUnknownError):
    """HTTP 500, 502 or 504 in answer to a run request: the run may still have started.

    A gateway that times out (504) or loses its upstream (502), or a server that fails after
    accepting the work (500), can answer this way after Docify began, and bills, the run. The
    status alone cannot tell, so it is treated like any other unknown outcome: never re-sent
    without the user's consent. 503 and 429 mean the request was turned away and stay
    ``DocifyServerError`` / ``DocifyRateLimitedError``.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        DocifyServerError.__init__(self, message, **kwargs)
        # What a stream-side unknown outcome carries; a status answer has none of it.
        self.session_id: str | None = None
        self.run_id: str | None = None
        self.events_seen: list[str] = []


# --- The run itself failed -----------------------------------------------------------------------


class DocifyRunFailedError(DocifyError):
    """The scenario ran and failed: COMPLETE with ``isSuccess`` false, or an ERROR event.

    The run was billed; ``result`` holds the server's run result when it sent one, so nothing the
    server returned is dropped.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        run_id: str | None = None,
        session_id: str | None = None,
        error: str | None = None,
        result: object | None = None,
    ):
        self.run_id = run_id
        self.session_id = session_id
        self.error = error
        self.result = result
        super().__init__(message, endpoint=endpoint)


class DocifyUnsafeDownloadError(DocifyError):
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
    "DocifyRunTimeoutError",
    "DocifyServerError",
    "DocifyStreamIncompleteError",
    "DocifyTimeoutError",
    "DocifyTransportError",
    "DocifyUnsafeDownloadError",
]
