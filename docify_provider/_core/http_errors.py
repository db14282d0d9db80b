"""Map httpx responses and exceptions onto a backend's error classes.

Messages are built from the endpoint path, the status and the server's own message only: never
from request headers, so the API key cannot leak into logs or tracebacks through an error. Every
function takes the backend's error root (``DocifyError``, ``DifyError``) and raises its class for
the decision the status or failure stands for.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import TYPE_CHECKING, Any

import httpx

from docify_provider._core.errors import (
    AuthenticationError,
    BadRequestError,
    HTTPStatusError,
    NotFoundError,
    OutcomeUnknownError,
    ProviderError,
    RateLimitedError,
    RequestTimeoutError,
    RunGatewayError,
    RunNotStartedError,
    RunTimeoutError,
    ServerError,
    TransportError,
    error_class,
)

if TYPE_CHECKING:
    from docify_provider._core.config import ClientConfig
    from docify_provider._core.endpoints import Endpoint

_MAX_MESSAGE = 500
#: Statuses that may come back after a run was started (see ``RunGatewayError``); 524 is
#: Cloudflare's "a timeout occurred" after 100 s without an answer.
RUN_OUTCOME_UNKNOWN = frozenset({500, 502, 504, 524})


def starts_run(endpoint: Endpoint) -> bool:
    """Whether a request to ``endpoint`` starts a run: not repeatable, and no other effect named.

    Its 429 is ``RunNotStartedError`` (the run was turned away, safe to send again); its lost answer
    an unknown outcome. A non-repeatable request that is not a run (``effect``: a form answer, a
    device-token poll) keeps the plain ``RateLimitedError``.
    """
    return not endpoint.repeatable and not endpoint.effect


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


def error_message(payload: Any) -> str | None:
    """The human part of an error body (``{"code": ..., "message": "..."}`` and its variants)."""
    if isinstance(payload, dict):
        for key in ("message", "msg", "error", "errorMessage", "detail"):
            if payload.get(key):
                return str(payload[key])
    return None


_TITLE = re.compile(r"<title[^>]*>([^<]{1,120})</title>", re.IGNORECASE)


def html_page(body: bytes | str) -> str | None:
    """``an HTML page ('<its title>')`` when ``body`` is a web page rather than an API's answer, else None.

    A base URL that points at a web front (a console, a proxy's error page) answers with HTML; the
    page's markup in a message says nothing, its title and the word "HTML" say what happened.
    """
    text = (body.decode("utf-8", "replace") if isinstance(body, bytes) else body)[:4096].lstrip().lower()
    if not text.startswith(("<!doctype html", "<html", "<head", "<body")) and "<html" not in text[:512]:
        return None
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    title = _TITLE.search(raw[:8192])
    return f"an HTML page ({' '.join(title.group(1).split())!r})" if title else "an HTML page"


def _body(body: bytes | str) -> tuple[str | None, str | None]:
    page = html_page(body)
    if page:
        return f"{page}, not the API's JSON", None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    message = error_message(payload) or text.strip() or None
    if message and len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "…"
    code = payload.get("code") if isinstance(payload, dict) else None
    return message, code if isinstance(code, str) else None


def capitalized(text: str) -> str:
    """``text`` with its first letter upper-cased (a hint that starts a sentence)."""
    return text[:1].upper() + text[1:]


def server_message(body: bytes | str) -> str | None:
    """What the server said in an error body, cut to a readable length."""
    return _body(body)[0]


def error_for_status(
    status: int,
    body: bytes | str,
    headers: httpx.Headers,
    endpoint: Endpoint,
    root: type[ProviderError],
    config: ClientConfig | None = None,
) -> HTTPStatusError:
    """The typed error for a non-2xx answer; the body must already have been read.

    ``config`` (the client's) lets the message name the connection actually used and the base URL
    it holds; never the key.
    """
    said, code = _body(body)
    name = root.label
    common: dict[str, Any] = {"status_code": status, "endpoint": str(endpoint), "server_message": said, "code": code}
    detail = f": {said}" if said else ""
    if status in (404, 405) and config is not None and endpoint.name != "download" and html_page(body):
        # A web page saying there is no such page: the base URL points at something else than the API.
        # (Other statuses keep to the page's title: a proxy's 502 page comes from the right URL too.)
        detail += f". {capitalized(config.base_url_hint())}"
    if status == 400:
        return error_class(root, BadRequestError)(f"{name} rejected the request{detail}", **common)
    if status in (401, 403):
        hint = (
            (config.refused_key_hint() if config is not None else "check the API key in the connection")
            if status == 401
            else f"the API key lacks permission for this {root.resource}"
        )
        return error_class(root, AuthenticationError)(f"{name} refused the API key ({hint}){detail}", **common)
    if status == 404:
        if endpoint.name == "download":
            what = "Attachment not found (its link may have expired)"
        elif config is not None and html_page(body):
            what = "Not found"  # the base URL hint is in the detail already
        elif endpoint.lookup and (config is None or not config.lacks_api_suffix()):
            # A lookup by id (a run, a task): its 404 says that thing is unknown, not that the URL is wrong.
            what = "Not found"
        elif config is not None:
            # The server's words first, then what to fix (the URL ends the sentence, nothing after it).
            return error_class(root, NotFoundError)(
                f"Not found{detail.rstrip('.')}. {capitalized(config.base_url_hint())}", **common
            )
        else:
            what = "Not found: check the connection's base URL"
        return error_class(root, NotFoundError)(f"{what}{detail}", **common)
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        wait = f" (Retry-After {retry_after:.0f}s)" if retry_after is not None else ""
        if starts_run(endpoint):
            return error_class(root, RunNotStartedError)(
                f"{name} turned the run request away (HTTP 429, not started){detail}{wait}. No run was started, "
                "so sending it again later is safe",
                retry_after=retry_after,
                **common,
            )
        return error_class(root, RateLimitedError)(
            f"{name} rate limit reached{detail}{wait}", retry_after=retry_after, **common
        )
    if status in RUN_OUTCOME_UNKNOWN and not endpoint.repeatable:
        if endpoint.effect:
            return error_class(root, RunGatewayError)(
                f"{name} answered HTTP {status} to the {endpoint.name} request{detail}. A gateway can answer so "
                f"after the server acted: {endpoint.effect}; it is not re-sent automatically.",
                **common,
            )
        return error_class(root, RunGatewayError)(
            f"{name} answered HTTP {status} to the run request{detail}. The run may still have started and "
            "been billed behind the gateway, so it is not re-sent automatically.",
            **common,
        )
    return error_class(root, ServerError)(f"{name} answered HTTP {status}{detail}", **common)


def error_for_transport(exc: httpx.HTTPError, endpoint: Endpoint | str, root: type[ProviderError]) -> ProviderError:
    """A connection-level failure as a typed error.

    For a run endpoint, a failure after the request may have been sent is an unknown outcome: the
    run may have started and been billed.
    """
    where = str(endpoint)
    sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol))
    kind = type(exc).__name__
    repeatable = getattr(endpoint, "repeatable", True)
    if sent and not repeatable:
        unknown = RunTimeoutError if isinstance(exc, httpx.TimeoutException) else OutcomeUnknownError
        effect = getattr(endpoint, "effect", None)
        if effect:
            return error_class(root, unknown)(
                f"The {endpoint.name} request was sent but no answer arrived ({kind}: {exc}): {effect}; "  # type: ignore[union-attr]
                "it is not re-sent automatically.",
                endpoint=where,
            )
        return error_class(root, unknown)(
            f"The run request was sent but no final answer arrived ({kind}: {exc}). The run may have "
            "started and been billed; it is not re-sent automatically.",
            endpoint=where,
        )
    cls = RequestTimeoutError if isinstance(exc, httpx.TimeoutException) else TransportError
    state = "before the request was sent" if not sent else "after the request was sent"
    return error_class(root, cls)(
        f"Connection to {root.label} failed {state} ({kind}: {exc})", endpoint=where, request_sent=sent
    )
