"""The sans-IO half of the httpx clients every backend drives: what is sent and how answers are read.

``HTTPBase`` holds it once for both transports: timeouts, TLS, proxies, redirects refused
(downloads follow them by hand, hop by hop), the key sent only to trusted hosts and cut out of
error bodies, typed errors for statuses and transport failures, streamed multipart uploads and the
size checks of streamed downloads. The I/O is ``_async/transport.py`` (``AsyncHTTP``, written by
hand) and ``_sync/transport.py`` (``SyncHTTP``, generated from it by ``scripts/unasync.py``);
``transport`` is where callers import them from.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
from httpx_sse import SSEError

from docify_provider import __version__
from docify_provider._core.config import redact_key, reveal
from docify_provider._core.endpoints import Endpoint
from docify_provider._core.errors import (
    ConfigError,
    ProtocolError,
    ProviderError,
    RunTimeoutError,
    UnsafeDownloadError,
    error_class,
)
from docify_provider._core.http_errors import capitalized, error_for_status, error_for_transport, html_page
from docify_provider._core.sse import BoundedEventText

if TYPE_CHECKING:
    from httpx_sse import ServerSentEvent

    from docify_provider._core.config import ClientConfig
    from docify_provider._core.files import FileSource

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
#: A produced file's URL; repeatable (a download costs nothing).
DOWNLOAD = Endpoint("download", "GET", "<attachment url>", repeatable=True, streaming=True)
E_co = TypeVar("E_co", covariant=True)


class StreamVerdict(Protocol[E_co]):
    """A backend's reading of one stream: SSE messages -> its events, and how the stream ended."""

    session_id: str | None
    events_seen: list[str]

    def feed(self, sse: ServerSentEvent) -> E_co | None: ...

    def finish(self) -> Any: ...


@functools.lru_cache(maxsize=16)
def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    # Building a context loads the CA bundle (~50 ms of CPU, ~1 MB); share one per setting instead
    # of one per client (a triggerer holds a client per stream). A CA bundle path is turned into a
    # context here because httpx deprecates ``verify=<str>``.
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify)


def ssl_context(verify: bool | str, errors: type[ProviderError] = ProviderError) -> ssl.SSLContext:
    """The process-wide TLS context for a ``ClientConfig.verify`` value (``errors``: the backend's root)."""
    try:
        return _ssl_context(verify)
    except (OSError, ssl.SSLError) as exc:
        raise error_class(errors, ConfigError)(
            f"Cannot load the CA bundle {verify!r} (connection extra ca_bundle): {exc}"
        ) from None


class HTTPBase:
    """Configuration -> httpx arguments; responses -> parsed JSON or the backend's typed errors."""

    def __init__(self, config: ClientConfig):
        self.config = config
        #: The backend's error root; every error raised here is its class for the decision.
        self.errors: type[ProviderError] = config.errors

    # -- httpx arguments ------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "base_url": cfg.base_url.rstrip("/") + "/",
            "timeout": httpx.Timeout(
                connect=cfg.connect_timeout, read=cfg.read_timeout, write=cfg.write_timeout, pool=cfg.connect_timeout
            ),
            "verify": ssl_context(cfg.verify, self.errors),
            "headers": {"User-Agent": f"{cfg.user_agent}/{__version__}", "Accept": "application/json"},
            "follow_redirects": False,
            "limits": httpx.Limits(max_connections=100, max_keepalive_connections=20),
        }

    def _proxy_mounts(self, transport_cls: type[Any]) -> dict[str, Any] | None:
        proxies = self.config.proxies
        if not proxies:
            return None
        if isinstance(proxies, str):
            proxies = {"all://": proxies}
        verify = ssl_context(self.config.verify, self.errors)
        return {pattern: transport_cls(proxy=url, verify=verify) for pattern, url in proxies.items()}

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {reveal(self.config.api_key)}"}

    def _stream_timeout(self) -> httpx.Timeout:
        cfg = self.config
        # Between stream chunks the read timeout is the idle timeout; pings keep it alive.
        return httpx.Timeout(
            connect=cfg.connect_timeout, read=cfg.idle_timeout, write=cfg.write_timeout, pool=cfg.connect_timeout
        )

    def _stream_headers(self) -> dict[str, str]:
        return {**self._auth(), "Accept": "text/event-stream", "Cache-Control": "no-store"}

    def _event_text(self, response: httpx.Response, endpoint: Endpoint) -> BoundedEventText:
        return BoundedEventText(
            response,
            max_event_chars=self.config.max_event_chars,
            idle_timeout=self.config.idle_timeout,
            endpoint=str(endpoint),
            max_stream_seconds=self.config.max_stream_seconds,
            errors=self.errors,
        )

    def _upload_kwargs(
        self, upload: FileSource, fields: dict[str, str], stack: contextlib.ExitStack
    ) -> Callable[[], dict[str, Any]]:
        """Request kwargs of a streamed multipart upload, made fresh per attempt.

        Each attempt opens the source again (closing files we opened when ``stack`` closes), so a
        retried upload streams from the start without holding the file in memory.
        """

        def make_kwargs() -> dict[str, Any]:
            fileobj = upload.opener()
            if upload.owned:
                stack.callback(fileobj.close)
            return {"data": fields, "files": {"file": (upload.name, fileobj, upload.mime_type)}}

        return make_kwargs

    def _download_headers(self, url: str) -> dict[str, str]:
        """Send the key with a download only to the API's own host or hosts trusted in the connection."""
        return self._auth() if self.config.is_trusted_host(url) else {}

    def _stream_request(
        self,
        endpoint: Endpoint,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        files: Any = None,
    ) -> dict[str, Any]:
        """Arguments for ``http.stream(...)`` of a streaming run (JSON, or multipart ``data`` + ``files``)
        or a re-attach."""
        request: dict[str, Any] = {
            "method": endpoint.method,
            "url": endpoint.path,
            "headers": self._stream_headers(),
            "timeout": self._stream_timeout(),
        }
        if json is not None:
            request["json"] = json
        if params:
            request["params"] = params
        if data is not None:
            request["data"] = data
        if files is not None:
            request["files"] = files
        return request

    def _stream_failure(
        self, exc: Exception, tracker: Any, response: httpx.Response, endpoint: Endpoint
    ) -> ProviderError:
        """The typed error for a stream that broke while being read, with what was seen so far.

        The session (run) id and the events seen let a human find the run in the service's console.
        """
        if isinstance(exc, SSEError):
            said = str(exc)
            if "html" in response.headers.get("content-type", "").lower():
                hint = capitalized(self.config.base_url_hint())
                said = f"{self.errors.label} answered with an HTML page, not events. {hint}"
            return error_class(self.errors, ProtocolError)(
                said, status_code=response.status_code, endpoint=str(endpoint)
            )
        if isinstance(exc, httpx.ReadTimeout):
            # Between stream chunks the read timeout is the idle timeout: say so, not just "timed out".
            err: Exception = error_class(self.errors, RunTimeoutError)(
                f"Nothing at all arrived on the stream for idle_timeout {self.config.idle_timeout:g}s (not even "
                "a keep-alive): the connection is stuck. The run may have started and been billed; it is not "
                "re-sent automatically.",
                endpoint=str(endpoint),
            )
        else:
            err = error_for_transport(exc, endpoint, self.errors) if isinstance(exc, httpx.HTTPError) else exc
        if not isinstance(err, ProviderError):  # pragma: no cover - only the above reach here
            raise exc
        for attr in ("session_id", "events_seen"):
            if hasattr(err, attr):
                setattr(err, attr, getattr(tracker, attr))
        if tracker.session_id:
            # The last few only: an endless stream must not make an endless message.
            seen = tracker.events_seen
            err.message = (
                f"{err.message} Session {tracker.session_id}; {len(seen)} event(s) seen, last: {', '.join(seen[-10:])}."
            )
            err.args = (err._render(),)
        return err

    # -- responses ------------------------------------------------------------------------------

    def _check(self, response: httpx.Response, endpoint: Endpoint) -> None:
        """Raise the typed error for a non-2xx answer (the body must be read).

        A server that echoes the key in its error body ("Invalid API key sk-...") would otherwise
        put it into the exception, and from there into logs, trigger events and the metadata DB:
        the key is cut out of the body before the error is built.
        """
        if response.status_code >= 300:
            body = redact_key(response.content, self.config.api_key)
            raise self._error_for_status(response.status_code, body, response.headers, endpoint)

    def _error_for_status(self, status: int, body: bytes, headers: httpx.Headers, endpoint: Endpoint) -> ProviderError:
        """The backend's typed error for a non-2xx answer; a backend with its own error body overrides it."""
        return error_for_status(status, body, headers, endpoint, self.errors, self.config)

    def _json(self, response: httpx.Response, endpoint: Endpoint) -> Any:
        try:
            return json.loads(response.content)
        except ValueError as exc:
            page = html_page(response.content)
            if page:  # a web front where the API should be: say what the base URL should look like
                said = f"{page}, not JSON. {capitalized(self.config.base_url_hint())}"
            else:
                ctype = response.headers.get("content-type", "no content type")
                said = f"non-JSON content ({ctype}): {response.content[:200]!r}"
            raise error_class(self.errors, ProtocolError)(
                f"{self.errors.label} answered with {said}",
                status_code=response.status_code,
                endpoint=str(endpoint),
            ) from exc

    def _next_location(self, response: httpx.Response, url: str, hops: int) -> str:
        if hops >= MAX_REDIRECTS:
            raise error_class(self.errors, UnsafeDownloadError)(
                f"Too many redirects downloading {urlsplit(url).path}", endpoint="download"
            )
        location = response.headers.get("location")
        if not location:
            raise error_class(self.errors, ProtocolError)(
                "Redirect without a Location header", status_code=response.status_code
            )
        return str(response.url.join(location))

    def _check_declared_size(self, expected: int | None, limit: int | None, url: str) -> None:
        """Refuse before any request when the declared ``fileSize`` is already over ``max_bytes``.

        Otherwise the limit would only stop the body after ``limit`` bytes had been fetched and written.
        """
        if expected is not None and limit is not None and expected > limit:
            name = urlsplit(url).path.rsplit("/", 1)[-1]
            raise error_class(self.errors, UnsafeDownloadError)(
                f"Attachment {name!r} declares {expected} bytes ({self.errors.size_field}), over the download limit "
                f"of {limit} "
                "bytes; not downloaded",
                endpoint="download",
            )

    def _check_download_size(self, received: int, expected: int | None, limit: int | None, url: str) -> None:
        name = urlsplit(url).path.rsplit("/", 1)[-1]
        if limit is not None and received > limit:
            raise error_class(self.errors, UnsafeDownloadError)(
                f"Attachment {name!r} exceeds the download limit of {limit} bytes; stopped at {received}",
                endpoint="download",
            )
        if expected is not None and received > expected:
            raise error_class(self.errors, UnsafeDownloadError)(
                f"Attachment {name!r} is larger than the {expected} bytes {self.errors.label} declared "
                f"({self.errors.size_field}); "
                f"stopped at {received}",
                endpoint="download",
            )

    def _check_download_complete(self, received: int, expected: int | None, url: str) -> None:
        if expected is not None and received != expected:
            name = urlsplit(url).path.rsplit("/", 1)[-1]
            raise error_class(self.errors, UnsafeDownloadError)(
                f"Attachment {name!r} has {received} bytes but {self.errors.label} declared {expected} "
                f"({self.errors.size_field})",
                endpoint="download",
            )
