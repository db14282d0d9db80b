"""Dify's errors: one class per decision (see ``docify_provider._core.errors``), under ``DifyError``.

Same decisions as Docify's (``DocifyError``), so ``except OutcomeUnknownError`` catches both
backends and ``except DifyError`` only this one. Dify's error ``code`` (``too_many_requests``,
``invalid_param``…) is kept on ``DifyHTTPError.code``.
"""

from __future__ import annotations

from docify_provider._core import errors as core


class DifyError(core.ProviderError, backend_root=True):
    """Base of every error raised by the Dify client, hook, operators, triggers and sensors."""

    label = "Dify"
    resource = "app"


# --- Caller mistakes, raised before any point is spent -------------------------------------------


class DifyConfigError(core.ConfigError, DifyError):
    """The connection or client configuration is unusable (bad base URL, plain http, bad extras)."""


class DifyInputError(core.InputError, DifyError):
    """Inputs do not fit the app's ``/parameters``; ``problems`` lists every one of them."""


class DifyFileError(core.FileError, DifyInputError):
    """A file cannot be uploaded: unsupported type, over the documented size limit, unreadable."""


# --- The server said no --------------------------------------------------------------------------


class DifyHTTPError(core.HTTPStatusError, DifyError):
    """The server answered with an error status; ``server_message`` is what it said."""


class DifyBadRequestError(core.BadRequestError, DifyHTTPError):
    """HTTP 400: the server rejected the request's parameters. Not retried."""


class DifyAuthenticationError(core.AuthenticationError, DifyHTTPError):
    """HTTP 401 or 403: the API key is invalid or lacks permission. Not retried."""


class DifyNotFoundError(core.NotFoundError, DifyHTTPError):
    """HTTP 404: wrong base URL or a resource that does not exist. Not retried."""


class DifyRateLimitedError(core.RateLimitedError, DifyHTTPError):
    """HTTP 429; ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""


class DifyRunNotStartedError(core.RunNotStartedError, DifyRateLimitedError):
    """HTTP 429 to a run request: Dify turned the run away before starting it; safe to send again."""


class DifyServerError(core.ServerError, DifyHTTPError):
    """HTTP 5xx (or another unexpected status): the service failed."""


# --- The network or the stream failed ------------------------------------------------------------


class DifyTransportError(core.TransportError, DifyError):
    """The connection failed or timed out; ``request_sent`` tells whether it may have reached Dify."""


class DifyTimeoutError(core.RequestTimeoutError, DifyTransportError):
    """Connect, read or idle timeout."""


class DifyProtocolError(core.ProtocolError, DifyError):
    """The server answered with something that is not the documented format."""


class DifyOutcomeUnknownError(core.OutcomeUnknownError, DifyError):
    """A run request may have reached Dify and the run could not be found again; never re-sent.

    Dify has a run-status endpoint and logs, so this is raised only when no run id was ever seen
    and no single matching run appears in the logs. ``run_id`` / ``session_id`` name what was seen.
    """


class DifyStreamIncompleteError(core.StreamIncompleteError, DifyOutcomeUnknownError):
    """The event stream ended without ``workflow_finished`` and the run could not be re-attached."""


class DifyRunTimeoutError(core.RunTimeoutError, DifyTimeoutError, DifyOutcomeUnknownError):
    """A run request timed out after it may have reached Dify (no answer, or a stream idle)."""


class DifyRunGatewayError(core.RunGatewayError, DifyServerError, DifyOutcomeUnknownError):
    """HTTP 500, 502, 504 or 524 in answer to a run request: the run may still have started."""


# --- The run itself failed -----------------------------------------------------------------------


class DifyRunFailedError(core.RunFailedError, DifyError):
    """The workflow ran and failed: an ``error`` event, or a run that ended ``failed`` or ``stopped``.

    ``error`` is Dify's error text, ``code`` its error code when an ``error`` event gave one;
    ``result`` holds the run as the server reported it, so nothing it returned is dropped.
    """

    def __init__(self, message: str, *, code: str | None = None, **kwargs: object) -> None:
        self.code = code
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class DifyUnsafeDownloadError(core.UnsafeDownloadError, DifyError):
    """An output file could not be stored safely: size mismatch, over the limit, untrusted redirect."""


class DifyPausedError(DifyError):
    """The workflow paused for human input and the task was told not to wait (``on_pause="fail"``).

    ``form`` is the ``human_input_required`` form (title, actions, expiry, token).
    """

    permanent = True
    permanent_because = "the Dify run is paused for human input; answer the form, then clear the task."

    def __init__(self, message: str, *, run_id: str | None = None, form: dict | None = None):
        self.run_id = run_id
        self.form = form or {}
        super().__init__(message)


__all__ = [
    "DifyAuthenticationError",
    "DifyBadRequestError",
    "DifyConfigError",
    "DifyError",
    "DifyFileError",
    "DifyHTTPError",
    "DifyInputError",
    "DifyNotFoundError",
    "DifyOutcomeUnknownError",
    "DifyPausedError",
    "DifyProtocolError",
    "DifyRateLimitedError",
    "DifyRunFailedError",
    "DifyRunGatewayError",
    "DifyRunNotStartedError",
    "DifyRunTimeoutError",
    "DifyServerError",
    "DifyStreamIncompleteError",
    "DifyTimeoutError",
    "DifyTransportError",
    "DifyUnsafeDownloadError",
]
