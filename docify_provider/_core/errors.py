"""One root for every error the package raises, and one class per decision.

Why classes per decision: DAG authors, the retry policy, the operators and the trigger codec all
decide from a failure what to do next (fail at once, retry later, never re-send). Each decision is
a class here, with the facts the deciders need as class attributes (``outcome_unknown``,
``permanent``), so no caller repeats an ``isinstance`` chain. Each backend has its own root
(``DocifyError``, ``DifyError``) and one class per decision under it::

    class DifyAuthenticationError(AuthenticationError, DifyHTTPError): ...

so users catch per backend (``except DifyError``), per decision across backends
(``except OutcomeUnknownError``) or both (``except DifyRunFailedError``). Shared code raises the
backend's class for a decision with ``error_class(root, Decision)``.

Every error carries the HTTP status and the endpoint when there was one, and never the API key:
messages are built only from the path, the status and the server's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

E = TypeVar("E", bound="ProviderError")


class ProviderError(Exception):
    """Root of every error raised by this package's clients, hooks, operators and triggers."""

    #: Name of the service in messages ("Docify", "Dify"); set on each backend's root.
    label: ClassVar[str] = "The service"
    #: What one key is bound to ("scenario", "app"), for messages.
    resource: ClassVar[str] = "resource"
    #: The field in which the service declares a produced file's size, for messages.
    size_field: ClassVar[str] = "size"
    #: The run may have started and been billed, and its result did not arrive: never re-send it
    #: without the user's consent.
    outcome_unknown: ClassVar[bool] = False
    #: Trying the same thing again cannot help (bad key, bad input, a run that failed on the server):
    #: an Airflow retry policy fails the task at once.
    permanent: ClassVar[bool] = False
    #: decision class -> this backend's class for it (only on a backend root).
    _family: ClassVar[dict[type[ProviderError], type[ProviderError]]]

    def __init__(self, message: str, *, status_code: int | None = None, endpoint: str | None = None):
        self.message = message
        self.status_code = status_code
        self.endpoint = endpoint
        super().__init__(self._render())

    def __init_subclass__(cls, *, backend_root: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if backend_root:
            cls._family = {}
            return
        decision = cls.__bases__[0]
        family = next((b.__dict__["_family"] for b in cls.__mro__[1:] if "_family" in b.__dict__), None)
        if family is not None and decision.__module__ == __name__:
            family[decision] = cls

    #: Why a retry cannot help, for ``permanent`` classes (``{label}``, ``{status}`` filled in).
    permanent_because: ClassVar[str] = "retrying cannot fix it."
    #: The run is settled by this failure: none was started, or it ended (even in failure).
    settles_run: ClassVar[bool] = False

    def run_settled(self) -> bool:
        """True when this failure proves no run is pending (so a retry may send a new one)."""
        return self.settles_run and not self.outcome_unknown

    #: Set on an outcome-unknown error by the operator that raised it when its next try settles the
    #: run without paying twice (re-attaches to it by id or once found in the logs, or sends again as
    #: ``allow_resubmit`` allows): what that try does, for the log. A retry may then help, so the error
    #: is retried.
    next_try: str | None = None

    def not_retried_because(self) -> str | None:
        """Why trying again is pointless or needs the user's consent; None when a retry may help."""
        why = self.why_not_retried()
        return None if why is None else f"{type(self).__name__}: {why}"

    def why_not_retried(self, *, where: str | None = None, not_followed: str = "") -> str | None:
        """``not_retried_because`` without the class name: one sentence, for a message that names it.

        An operator that knows them names where its task state is kept (``where``) and why its run
        cannot be followed (``not_followed``) for an unknown outcome.
        """
        if self.outcome_unknown:
            if self.next_try:
                return None
            session = getattr(self, "session_id", None)
            seen = f" (session {session})" if session else ""
            follow = f"; {not_followed}; " if not_followed else ", so "
            state = f": {where}; then" if where else ", then"
            return (
                f"a {self.label} run request may already have been started and billed{seen}{follow}trying again "
                "would risk paying twice, which needs the user's consent (set allow_resubmit=True, or clear the "
                f"task state{state} clear the task to pay for a new run)."
            )
        if self.permanent:
            return self.permanent_because.format(label=self.label, status=self.status_code)
        return None

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


def _rebuild(cls: type[ProviderError], state: dict[str, object]) -> ProviderError:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    Exception.__init__(obj, obj._render())
    return obj


def error_class(root: type[ProviderError], decision: type[E]) -> type[E]:
    """The backend class of ``root`` for ``decision`` (``error_class(DifyError, NotFoundError)``)."""
    if root is ProviderError:  # no backend: the decision class itself
        return decision
    cls = root._family.get(decision)
    if cls is None:  # pragma: no cover - a backend that forgot a decision; test_errors checks all
        raise TypeError(f"{root.__name__} has no class for {decision.__name__}")
    return cls  # type: ignore[return-value]


# --- Caller mistakes, raised before anything is spent --------------------------------------------


class ConfigError(ProviderError):
    """The connection or client configuration is unusable (bad base URL, plain http, bad extras)."""

    permanent = True
    settles_run = True
    permanent_because = "the {label} connection or client configuration is unusable; retrying cannot fix it."


class InputError(ProviderError, ValueError):
    """Inputs do not fit what the server accepts; ``problems`` lists every one, not just the first."""

    permanent = True
    settles_run = True
    permanent_because = "the inputs or files do not fit what the {label} server accepts; retrying cannot fix them."

    def __init__(self, problems: Sequence[str], *, endpoint: str | None = None):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid {self.label} inputs ({len(self.problems)} problem(s)):\n{lines}", endpoint=endpoint)


class FileError(InputError):
    """A file cannot be uploaded: unsupported type, over the size limit, unreadable."""


# --- The server said no --------------------------------------------------------------------------


class HTTPStatusError(ProviderError):
    """The server answered with an error status; ``server_message`` is what it said, ``code`` its code."""

    settles_run = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        endpoint: str,
        server_message: str | None = None,
        code: str | None = None,
    ):
        self.server_message = server_message
        self.code = code
        super().__init__(message, status_code=status_code, endpoint=endpoint)


class BadRequestError(HTTPStatusError):
    """HTTP 400: the server rejected the request's parameters. Not retried."""

    permanent = True
    permanent_because = "{label} rejected the request's parameters (HTTP 400); retrying cannot fix it."


class AuthenticationError(HTTPStatusError):
    """HTTP 401 or 403: the key is invalid or lacks permission. Not retried."""

    permanent = True
    permanent_because = (
        "{label} rejected the API key (HTTP {status}); retrying cannot fix it. Check the connection's key "
        "and what it is bound to."
    )


class NotFoundError(HTTPStatusError):
    """HTTP 404: wrong base URL or a resource that does not exist. Not retried."""

    permanent = True
    permanent_because = "HTTP 404 (wrong base URL or a resource that does not exist); retrying cannot fix it."


class RateLimitedError(HTTPStatusError):
    """HTTP 429; ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any):
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class RunNotStartedError(RateLimitedError):
    """HTTP 429 in answer to a run request: the server turned the run away before starting it.

    The one failure of a run request after which sending the same request again is safe: the
    server refused it at the door (Dify's ``too_many_requests``, its app concurrency limit
    ``APP_MAX_ACTIVE_REQUESTS``; the account API's per-token limiter; a gateway's rate limit), so
    nothing ran and nothing was billed. Who may send again is the caller's decision (the batch's
    admission limiter, ``_core.admission``; a run operator that waits); the transport never does.
    A 429 whose body says the run *did* start (Dify's ``rate_limit_error``, the model provider's
    limit hit by a running workflow) is a ``RunFailedError`` instead (``dify.protocol.pipeline_error``).
    """


class ServerError(HTTPStatusError):
    """HTTP 5xx (or another unexpected status): the service failed."""


# --- The network or the stream failed ------------------------------------------------------------


class TransportError(ProviderError):
    """The connection failed or timed out.

    ``request_sent`` tells whether the request may have reached the server: when False (the
    connection was never established) a retry cannot cause a second run.
    """

    def __init__(self, message: str, *, endpoint: str | None = None, request_sent: bool = True):
        self.request_sent = request_sent
        super().__init__(message, endpoint=endpoint)

    def run_settled(self) -> bool:
        # A connection never established cannot have started a run.
        return not self.request_sent and not self.outcome_unknown


class RequestTimeoutError(TransportError):
    """Connect, read or idle timeout."""


class ProtocolError(ProviderError):
    """The server answered with something that is not the documented format."""


class OutcomeUnknownError(ProviderError):
    """A run request may have reached the server but no final answer arrived.

    The run may have been started and billed. Re-sending would risk paying twice, so this is never
    retried automatically. ``session_id`` / ``run_id`` name what was seen, ``events_seen`` the stream
    event types received before the answer stopped.
    """

    outcome_unknown = True

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


class StreamIncompleteError(OutcomeUnknownError):
    """The event stream ended (cleanly or not) without its final event."""


class RunTimeoutError(RequestTimeoutError, OutcomeUnknownError):
    """A run request timed out after it may have reached the server (no answer, or a stream idle).

    Both a timeout and an unknown outcome: the run may have started and been billed, so it is never
    re-sent automatically (``request_sent`` is always True).
    """

    def __init__(self, message: str, **kwargs: Any):
        OutcomeUnknownError.__init__(self, message, **kwargs)
        self.request_sent = True


class RunGatewayError(ServerError, OutcomeUnknownError):
    """HTTP 500, 502, 504 (or 524) in answer to a run request: the run may still have started.

    A gateway that times out (504, Cloudflare's 524) or loses its upstream (502), or a server that
    fails after accepting the work (500), can answer this way after the service began, and bills,
    the run. The status alone cannot tell, so it is treated like any other unknown outcome: never
    re-sent without the user's consent. 503 and 429 mean the request was turned away.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        ServerError.__init__(self, message, **kwargs)
        # What a stream-side unknown outcome carries; a status answer has none of it.
        self.session_id: str | None = None
        self.run_id: str | None = None
        self.events_seen: list[str] = []


# --- The run itself failed -----------------------------------------------------------------------


class RunFailedError(ProviderError):
    """The run happened and failed on the server.

    It was billed; ``result`` holds the server's run result when it sent one, so nothing the server
    returned is dropped.
    """

    settles_run = True

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


class UnsafeDownloadError(ProviderError):
    """A produced file could not be stored safely: size mismatch, over the limit, untrusted redirect."""


class LedgerError(ProviderError):
    """The task's own state (what was sent, what was bought) cannot be read or written.

    Raised before anything is sent: not knowing whether a run was already bought is "unknown",
    never "nothing", so the try stops instead of paying again.
    """


#: Every decision a backend must give a class for.
DECISIONS: tuple[type[ProviderError], ...] = (
    ConfigError,
    InputError,
    FileError,
    HTTPStatusError,
    BadRequestError,
    AuthenticationError,
    NotFoundError,
    RateLimitedError,
    RunNotStartedError,
    ServerError,
    TransportError,
    RequestTimeoutError,
    ProtocolError,
    OutcomeUnknownError,
    StreamIncompleteError,
    RunTimeoutError,
    RunGatewayError,
    RunFailedError,
    UnsafeDownloadError,
)
