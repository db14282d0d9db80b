"""The user-scoped OpenAPI's errors: one class per decision (``docify_provider._core.errors``),
under ``DifyOpenAPIError``, and the mapping of its error bodies onto them.

A separate family from the Service API's ``DifyError``: the credential differs (an account token,
not an app key), so do the remedies ("log in again" instead of "check the app key"). Decisions are
shared, so ``except OutcomeUnknownError`` catches every backend and ``except DifyOpenAPIError``
only this one.

Two error wire shapes exist (B2, B3 of the server-behaviour reference): the ``ErrorBody``
``{code, message, status, hint?, details?: [{type, loc, msg}]}`` of every endpoint, and the raw
bearer rate-limit answer ``{"error": "rate_limited", "retry_after_ms": N}`` with ``Retry-After``.
The device flow answers RFC 8628 ``{"error": ...}`` bodies, handled in ``device``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from docify_provider._core import errors as core
from docify_provider._core.config import conn_env_var, shown_url
from docify_provider._core.http_errors import error_for_status as core_error_for_status

if TYPE_CHECKING:
    import httpx

    from docify_provider._core.endpoints import Endpoint
    from docify_provider.dify_openapi.config import DifyOpenAPIClientConfig


class DifyOpenAPIError(core.ProviderError, backend_root=True):
    """Base of every error raised by the Dify user-scoped OpenAPI client and hook."""

    label = "Dify"
    resource = "app"


# --- Caller mistakes, raised before anything is spent --------------------------------------------


class DifyOpenAPIConfigError(core.ConfigError, DifyOpenAPIError):
    """The connection or client configuration is unusable (no token, bad base URL, plain http)."""


class DifyOpenAPIInputError(core.InputError, DifyOpenAPIError):
    """Inputs do not fit the app's ``input_schema`` or file rules; ``problems`` lists every one."""


class DifyOpenAPIFileError(core.FileError, DifyOpenAPIInputError):
    """A file cannot be sent: unreadable, over the size limit, a type the variable refuses."""


class DifyOpenAPITagFilterError(DifyOpenAPIInputError):
    """``list_apps(tag=...)`` against a server whose app rows carry no ``tags``: it cannot show an
    app carries the tag (current Dify ignores the ``tag`` filter), so nothing is returned to run."""


class DifyOpenAPIAppLookupError(DifyOpenAPIInputError):
    """An app given by name matched none or several apps; ``candidates`` are the apps to choose from.

    Still an input error for ``except`` clauses and the retry policy, but worded as what it is:
    the name is the problem (each problem says which name and what to pass), not the inputs.
    """

    permanent_because = "no app (or more than one) has that name; retrying cannot fix it."

    def __init__(self, problems: Sequence[str], *, candidates: Sequence[dict[str, Any]] = ()) -> None:
        self.candidates = list(candidates)
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            text = f"{len(self.problems)} Dify app names do not resolve:\n{lines}"
        core.ProviderError.__init__(self, text)


# --- The server said no --------------------------------------------------------------------------


class DifyOpenAPIHTTPError(core.HTTPStatusError, DifyOpenAPIError):
    """The server answered with an error status; ``code``, ``hint`` and ``details`` are its ErrorBody's."""

    hint: str | None = None
    #: Replaced per instance by ``error_for_status``.
    details: list[Any] = []


class DifyOpenAPIBadRequestError(core.BadRequestError, DifyOpenAPIHTTPError):
    """HTTP 400, 409, 412, 413, 415, 422 or 426: the request cannot succeed as sent. Not retried."""


class DifyOpenAPIAuthenticationError(core.AuthenticationError, DifyOpenAPIHTTPError):
    """HTTP 401 (token invalid, expired or revoked: log in again) or 403 (not allowed). Not retried."""

    permanent_because = (
        "{label} refused the account token (HTTP {status}); retrying cannot fix it. Log in again "
        "(`airflow-dify login`) for a new token, or check the app's access and its Service API toggle."
    )


class DifyOpenAPINotFoundError(core.NotFoundError, DifyOpenAPIHTTPError):
    """HTTP 404: an unknown app, run, form or session (or a wrong base URL). Not retried."""


class DifyOpenAPIRateLimitedError(core.RateLimitedError, DifyOpenAPIHTTPError):
    """HTTP 429; ``retry_after`` in seconds from ``Retry-After`` or the body's ``retry_after_ms``."""


class DifyOpenAPIRunNotStartedError(core.RunNotStartedError, DifyOpenAPIRateLimitedError):
    """HTTP 429 to a run request: Dify turned the run away before starting it; safe to send again."""


class DifyOpenAPIServerError(core.ServerError, DifyOpenAPIHTTPError):
    """HTTP 5xx (or another unexpected status): the service failed."""


# --- The network or the stream failed ------------------------------------------------------------


class DifyOpenAPITransportError(core.TransportError, DifyOpenAPIError):
    """The connection failed or timed out; ``request_sent`` tells whether it may have reached Dify."""


class DifyOpenAPITimeoutError(core.RequestTimeoutError, DifyOpenAPITransportError):
    """Connect, read or idle timeout."""


class DifyOpenAPIProtocolError(core.ProtocolError, DifyOpenAPIError):
    """The server answered with something that is not the documented format."""


class DifyOpenAPIOutcomeUnknownError(core.OutcomeUnknownError, DifyOpenAPIError):
    """A run request may have reached Dify and its outcome is unknown; never re-sent.

    The user-scoped OpenAPI has no run-detail or log endpoint, so a run whose id was never seen
    cannot be looked up: only the Dify console shows it.
    """


class DifyOpenAPIStreamIncompleteError(core.StreamIncompleteError, DifyOpenAPIOutcomeUnknownError):
    """The event stream ended without its final event and could not be re-attached."""


class DifyOpenAPIRunTimeoutError(core.RunTimeoutError, DifyOpenAPITimeoutError, DifyOpenAPIOutcomeUnknownError):
    """A run request timed out after it may have reached Dify (no answer, or a stream idle)."""


class DifyOpenAPIRunGatewayError(core.RunGatewayError, DifyOpenAPIServerError, DifyOpenAPIOutcomeUnknownError):
    """HTTP 500, 502, 504 or 524 in answer to a run request: the run may still have started."""


# --- The run itself failed -----------------------------------------------------------------------


class DifyOpenAPIRunFailedError(core.RunFailedError, DifyOpenAPIError):
    """The app ran and failed: an ``error`` event, or a run that ended ``failed`` or ``stopped``."""

    def __init__(self, message: str, *, code: str | None = None, **kwargs: Any) -> None:
        self.code = code
        super().__init__(message, **kwargs)


class DifyOpenAPIUnsafeDownloadError(core.UnsafeDownloadError, DifyOpenAPIError):
    """An output file could not be stored safely: size mismatch, over the limit, untrusted redirect."""


# --- Login ---------------------------------------------------------------------------------------


class DifyOpenAPIDeviceFlowError(DifyOpenAPIError):
    """The device login ended without a token: ``reason`` is ``expired_token``, ``access_denied``,
    ``unsupported_client`` or another RFC 8628 error. Start a new login."""

    permanent = True
    permanent_because = "the Dify device login ended without a token; start a new login."

    def __init__(self, message: str, *, reason: str, endpoint: str | None = None) -> None:
        self.reason = reason
        super().__init__(message, endpoint=endpoint)


# --- mapping the wire's error bodies -------------------------------------------------------------

#: 4xx statuses that say the request itself cannot succeed (ErrorBody codes by status, B3).
_REJECTED = frozenset({409, 412, 413, 415, 422, 426})


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _details(details: Any) -> list[str]:
    """``details: [{type, loc: [...], msg}]`` (pydantic's) as ``"inputs.topic: Field required"``."""
    out = []
    for item in details if isinstance(details, list) else []:
        if isinstance(item, dict):
            loc = ".".join(str(part) for part in item.get("loc") or [] if part not in ("body",))
            msg = str(item.get("msg") or item.get("type") or "")
            out.append(f"{loc}: {msg}" if loc else msg)
        else:
            out.append(str(item))
    return out


def login_command(conn_id: str | None, from_env: bool, base_url: str) -> str:
    """The device login that gives the connection actually used a new account token.

    ``airflow-dify login --conn-id X`` stores the token in connection X in the metadata database; a
    connection defined by its ``AIRFLOW_CONN_<ID>`` variable hides that row, so there the login
    prints the variable's new value instead (``--print-env``, with the host it cannot read).
    """
    if not conn_id:
        return "`airflow-dify login` (--conn-id names the connection it stores the token in)"
    if from_env:
        return (
            f"`airflow-dify login --conn-id {conn_id} --host {shown_url(base_url)} --print-env`, then set "
            f"{conn_env_var(conn_id)} to what it prints"
        )
    return f"`airflow-dify login --conn-id {conn_id}` (it stores the token in that connection)"


def login_hint(conn_id: str | None, from_env: bool, base_url: str, *, again: bool = True) -> str:
    """``log in [again] with <login_command>``: what a missing or refused account token asks for."""
    return f"{'log in again' if again else 'log in'} with {login_command(conn_id, from_env, base_url)}"


def _refused_token(code: str | None, said: str | None, hint: str) -> str:
    """A 401's message: an expired session (current Dify: code ``token_expired``) or any other refusal."""
    hint = hint[:1].upper() + hint[1:]
    if code == "token_expired":
        return f"Dify says the account token expired (token_expired{': ' + said if said else ''}). {hint}"
    return (
        f"Dify refused the account token: it is invalid, expired or revoked{' (' + said + ')' if said else ''}. {hint}"
    )


def error_for_status(
    status: int,
    body: bytes,
    headers: httpx.Headers,
    endpoint: Endpoint,
    config: DifyOpenAPIClientConfig | None = None,
) -> core.HTTPStatusError:
    """The typed error for a non-2xx OpenAPI answer (the key already cut out of ``body``).

    Built on the shared mapping (status -> decision class, ``Retry-After``, gateway answers to a
    run), then given what the OpenAPI adds: the ErrorBody's ``code``, ``hint`` and ``details`` in
    the message, 401 worded for an account token (log in again, for the connection ``config`` was
    read from), 422 and friends as rejected requests, and the bearer limiter's ``retry_after_ms``
    when ``Retry-After`` is missing.
    """
    payload = _payload(body)
    err = core_error_for_status(status, body, headers, endpoint, DifyOpenAPIError, config)
    code = payload.get("code") or payload.get("error")
    code = str(code) if code else None
    hint = payload.get("hint")
    details = _details(payload.get("details"))
    said = err.server_message
    if status in _REJECTED:
        err = DifyOpenAPIBadRequestError(
            f"Dify rejected the request{': ' + said if said else ''}",
            status_code=status,
            endpoint=str(endpoint),
            server_message=said,
            code=code,
        )
    elif status == 401:
        remedy = config.refused_key_hint() if config is not None else login_hint(None, False, "")
        err.message = _refused_token(code, said, remedy)
    elif status == 403:
        err.message = (
            f"Dify refused this request for the account token (HTTP 403){': ' + said if said else ''}. "
            "The account may lack access or a workspace role, the token a scope, or the app's Service "
            "API toggle is off (the OpenAPI requires it too)"
        )
    elif status == 429 and isinstance(err, core.RateLimitedError) and err.retry_after is None:
        ms = payload.get("retry_after_ms")
        if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms >= 0:
            err.retry_after = ms / 1000.0
            err.message += f" (retry_after_ms {ms:g})"
    err.code = code
    extra = []
    if code and code not in (err.message or ""):
        extra.append(f"code {code}")
    if isinstance(hint, str) and hint:
        extra.append(f"hint: {hint}")
    if details:
        extra.append("details: " + "; ".join(details[:20]))
    if extra:
        err.message = f"{err.message} ({'; '.join(extra)})"
    err.hint = hint if isinstance(hint, str) else None  # type: ignore[attr-defined]
    err.details = payload.get("details") if isinstance(payload.get("details"), list) else []  # type: ignore[attr-defined]
    err.args = (err._render(),)
    return err


__all__ = [
    "DifyOpenAPIAppLookupError",
    "DifyOpenAPIAuthenticationError",
    "DifyOpenAPIBadRequestError",
    "DifyOpenAPIConfigError",
    "DifyOpenAPIDeviceFlowError",
    "DifyOpenAPIError",
    "DifyOpenAPIFileError",
    "DifyOpenAPIHTTPError",
    "DifyOpenAPIInputError",
    "DifyOpenAPINotFoundError",
    "DifyOpenAPIOutcomeUnknownError",
    "DifyOpenAPIProtocolError",
    "DifyOpenAPIRateLimitedError",
    "DifyOpenAPIRunFailedError",
    "DifyOpenAPIRunGatewayError",
    "DifyOpenAPIRunNotStartedError",
    "DifyOpenAPIRunTimeoutError",
    "DifyOpenAPIServerError",
    "DifyOpenAPIStreamIncompleteError",
    "DifyOpenAPITagFilterError",
    "DifyOpenAPITimeoutError",
    "DifyOpenAPITransportError",
    "DifyOpenAPIUnsafeDownloadError",
    "error_for_status",
    "login_command",
    "login_hint",
]
