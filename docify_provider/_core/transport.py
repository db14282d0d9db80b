"""The httpx clients every backend drives, sync (workers) and async (the triggerer).

Only the transport differs between ``SyncHTTP`` and ``AsyncHTTP``; what is sent and how answers
are checked lives in ``HTTPBase``, once: timeouts, TLS, proxies, redirects refused (downloads
follow them by hand, hop by hop), the key sent only to trusted hosts and cut out of error bodies,
typed errors for statuses and transport failures, retries by the shared policy, streamed
multipart uploads and size-checked streamed downloads. A backend client subclasses one of these
and adds its operations (``docify.client.DocifyClient``, ``dify.client.DifyClient``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import ssl
import weakref
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
from httpx_sse import EventSource, SSEError
from tenacity import AsyncRetrying, Retrying

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
from docify_provider._core.http_errors import error_for_status, error_for_transport
from docify_provider._core.retries import retry_kwargs
from docify_provider._core.sse import BoundedEventText

if TYPE_CHECKING:
    from httpx_sse import ServerSentEvent
    from typing_extensions import Self

    from docify_provider._core.config import ClientConfig
    from docify_provider._core.files import FileSource

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
#: A produced file's URL; repeatable (a download costs nothing).
DOWNLOAD = Endpoint("download", "GET", "<attachment url>", repeatable=True, streaming=True)
A = TypeVar("A", bound="AsyncHTTP")
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
            return error_class(self.errors, ProtocolError)(
                str(exc), status_code=response.status_code, endpoint=str(endpoint)
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
        return error_for_status(status, body, headers, endpoint, self.errors)

    def _json(self, response: httpx.Response, endpoint: Endpoint) -> Any:
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise error_class(self.errors, ProtocolError)(
                f"{self.errors.label} answered with non-JSON content "
                f"({response.headers.get('content-type', 'no content type')}): {response.content[:200]!r}",
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


class SyncHTTP(HTTPBase):
    """Blocking transport; thread-safe; close it when done."""

    def __init__(self, config: Any, *, transport: httpx.BaseTransport | None = None):
        super().__init__(config)
        self._transport = transport
        self._client: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                transport=self._transport, mounts=self._proxy_mounts(httpx.HTTPTransport), **self._client_kwargs()
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _request(self, endpoint: Endpoint, **kwargs: Any) -> httpx.Response:
        """Send once: a read, checked answer or a typed error."""
        try:
            response = self.http.request(endpoint.method, endpoint.path, headers=self._auth(), **kwargs)
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, endpoint, self.errors) from None
        self._check(response, endpoint)
        return response

    def _call(self, endpoint: Endpoint, make_kwargs: Callable[[], dict[str, Any]] = dict) -> Any:
        """Send with the retry policy for ``endpoint``; return the parsed JSON."""
        for attempt in Retrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                return self._json(self._request(endpoint, **make_kwargs()), endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    def download(
        self,
        url: str,
        open_sink: Callable[[], contextlib.AbstractContextManager[IO[bytes]]],
        *,
        expected_size: int | None = None,
        max_bytes: int | None = None,
    ) -> int:
        """Stream ``url`` into the sink ``open_sink()`` returns; return the byte count.

        The key goes only to trusted hosts, redirects are followed by hand so that each hop is
        checked, and the body is cut off as soon as it exceeds the declared ``fileSize``.
        """
        endpoint = DOWNLOAD
        self._check_declared_size(expected_size, max_bytes, url)
        for attempt in Retrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                return self._download_once(url, open_sink, expected_size, max_bytes, endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    def _download_once(
        self,
        url: str,
        open_sink: Callable[[], contextlib.AbstractContextManager[IO[bytes]]],
        expected_size: int | None,
        max_bytes: int | None,
        endpoint: Endpoint,
    ) -> int:
        current = url
        for hops in range(10):
            try:
                with self.http.stream("GET", current, headers=self._download_headers(current)) as response:
                    if response.is_redirect:
                        current = self._next_location(response, current, hops)
                        continue
                    if response.status_code >= 300:
                        response.read()
                        self._check(response, endpoint)
                    received = 0
                    with open_sink() as sink:
                        for chunk in response.iter_bytes(CHUNK):
                            received += len(chunk)
                            self._check_download_size(received, expected_size, max_bytes, current)
                            sink.write(chunk)
                    self._check_download_complete(received, expected_size, current)
                    return received
            except httpx.HTTPError as exc:
                raise error_for_transport(exc, endpoint, self.errors) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _open_stream(
        self, endpoint: Endpoint, **request: Any
    ) -> tuple[contextlib.AbstractContextManager[Any], httpx.Response]:
        """Open a stream (retried by the shared policy: a run only when it certainly never left).

        A repeatable stream (a re-attach) answered with an error status is checked here, inside the
        retry, so that a 429 or 502/503/504/524 to it is retried like any other read; a run's error
        answer is left to ``_read_stream``.
        """
        for attempt in Retrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                stream = self.http.stream(**self._stream_request(endpoint, **request))
                try:
                    response = stream.__enter__()
                    if endpoint.repeatable and response.status_code >= 300:
                        try:
                            response.read()
                        finally:
                            stream.__exit__(None, None, None)
                        self._check(response, endpoint)
                    return stream, response
                except httpx.HTTPError as exc:
                    raise error_for_transport(exc, endpoint, self.errors) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_stream(
        self,
        stream: contextlib.AbstractContextManager[Any],
        response: httpx.Response,
        endpoint: Endpoint,
        tracker: StreamVerdict[Any],
    ) -> Iterator[Any]:
        """Events of an open stream as the backend's ``tracker`` decodes them, up to a terminal one.

        At the end of the body without a terminal event ``tracker.finish()`` decides (raise, or
        let the caller re-attach); a broken stream raises the typed error with what was seen.
        """
        try:
            if response.status_code >= 300:
                response.read()
                self._check(response, endpoint)
            text = self._event_text(response, endpoint)
            #: A tracker may decide itself which event ends the stream (a re-attach that goes on past a pause).
            ends = getattr(tracker, "ends_stream", None)
            try:
                for sse in EventSource(text).iter_sse():  # type: ignore[arg-type]
                    event = tracker.feed(sse)
                    if event is not None:
                        text.event_seen()
                        yield event
                        if ends(event) if ends else event.is_terminal:
                            return
            except (SSEError, httpx.HTTPError, RunTimeoutError) as exc:  # timeout: only keep-alives arrived
                raise self._stream_failure(exc, tracker, response, endpoint) from None
            tracker.finish()
        finally:
            stream.__exit__(None, None, None)


class AsyncHTTP(HTTPBase):
    """Asyncio transport; use ``async with`` or ``await aclose()``."""

    def __init__(
        self,
        config: Any,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ):
        """``http``: an ``httpx.AsyncClient`` to borrow (see ``shared_async_client``); not closed by ``aclose``."""
        super().__init__(config)
        self._transport = transport
        self._client: httpx.AsyncClient | None = http
        self._owns_client = http is None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self._new_http()
        return self._client

    def _new_http(self, **overrides: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` built from this client's config; ``overrides`` replace its arguments."""
        kwargs = {**self._client_kwargs(), **overrides}
        mounts = self._proxy_mounts(httpx.AsyncHTTPTransport)
        return httpx.AsyncClient(transport=self._transport, mounts=mounts, **kwargs)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
        self._owns_client = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, endpoint: Endpoint, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(endpoint.method, endpoint.path, headers=self._auth(), **kwargs)
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, endpoint, self.errors) from None
        self._check(response, endpoint)
        return response

    async def _call(self, endpoint: Endpoint, make_kwargs: Callable[[], dict[str, Any]] = dict) -> Any:
        async for attempt in AsyncRetrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                return self._json(await self._request(endpoint, **make_kwargs()), endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    async def download(
        self,
        url: str,
        open_sink: Callable[[], contextlib.AbstractContextManager[IO[bytes]]],
        *,
        expected_size: int | None = None,
        max_bytes: int | None = None,
    ) -> int:
        """Async twin of ``SyncHTTP.download`` (the sink is written synchronously)."""
        endpoint = DOWNLOAD
        self._check_declared_size(expected_size, max_bytes, url)
        async for attempt in AsyncRetrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                current = url
                for hops in range(10):
                    try:
                        async with self.http.stream(
                            "GET", current, headers=self._download_headers(current)
                        ) as response:
                            if response.is_redirect:
                                current = self._next_location(response, current, hops)
                                continue
                            if response.status_code >= 300:
                                await response.aread()
                                self._check(response, endpoint)
                            received = 0
                            with open_sink() as sink:
                                async for chunk in response.aiter_bytes(CHUNK):
                                    received += len(chunk)
                                    self._check_download_size(received, expected_size, max_bytes, current)
                                    sink.write(chunk)
                            self._check_download_complete(received, expected_size, current)
                            return received
                    except httpx.HTTPError as exc:
                        raise error_for_transport(exc, endpoint, self.errors) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _open_stream(
        self, endpoint: Endpoint, **request: Any
    ) -> tuple[contextlib.AbstractAsyncContextManager[Any], httpx.Response]:
        """Async twin of ``SyncHTTP._open_stream`` (a repeatable stream's error status retried too)."""
        async for attempt in AsyncRetrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                stream = self.http.stream(**self._stream_request(endpoint, **request))
                try:
                    response = await stream.__aenter__()
                    if endpoint.repeatable and response.status_code >= 300:
                        try:
                            await response.aread()
                        finally:
                            await stream.__aexit__(None, None, None)
                        self._check(response, endpoint)
                    return stream, response
                except httpx.HTTPError as exc:
                    raise error_for_transport(exc, endpoint, self.errors) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_stream(
        self,
        stream: contextlib.AbstractAsyncContextManager[Any],
        response: httpx.Response,
        endpoint: Endpoint,
        tracker: StreamVerdict[Any],
    ) -> AsyncIterator[Any]:
        """Async twin of ``SyncHTTP._read_stream``."""
        try:
            if response.status_code >= 300:
                await response.aread()
                self._check(response, endpoint)
            text = self._event_text(response, endpoint)
            #: A tracker may decide itself which event ends the stream (a re-attach that goes on past a pause).
            ends = getattr(tracker, "ends_stream", None)
            try:
                async for sse in EventSource(text).aiter_sse():  # type: ignore[arg-type]
                    event = tracker.feed(sse)
                    if event is not None:
                        text.event_seen()
                        yield event
                        if ends(event) if ends else event.is_terminal:
                            return
            except (SSEError, httpx.HTTPError, RunTimeoutError) as exc:  # timeout: only keep-alives arrived
                raise self._stream_failure(exc, tracker, response, endpoint) from None
            tracker.finish()
        finally:
            await stream.__aexit__(None, None, None)


# -- one httpx client per event loop and connection (the triggerer) ----------------------------------


class _SharedHttp:
    __slots__ = ("http", "users")

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.users = 0


#: event loop -> (connection id, transport settings) -> the client its triggers share. Weak on the
#: loop: an httpx client (its connections, anyio primitives) belongs to the loop it was used in.
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _SharedHttp]] = weakref.WeakKeyDictionary()


def _http_settings(config: Any) -> Hashable:
    """What ``httpx.AsyncClient`` is built from; the key, timeouts per request and limits are not in it."""
    proxies = config.proxies
    if isinstance(proxies, dict):
        proxies = tuple(sorted(proxies.items()))
    return (
        config.base_url,
        config.connect_timeout,
        config.read_timeout,
        config.write_timeout,
        config.verify,
        config.user_agent,
        proxies,
    )


@contextlib.asynccontextmanager
async def shared_async_client(config: Any, *, scope: str, client_class: type[A]) -> AsyncIterator[A]:
    """A ``client_class`` client (an ``AsyncHTTP``) for ``config`` over the ``httpx.AsyncClient`` that
    every user of the same ``scope`` (a connection id) and transport settings shares in the running
    event loop.

    A triggerer runs many triggers in one loop: building a client per stream costs ~1 ms of CPU and
    its own connection pool. The shared client is built by the first user and closed when the last
    one leaves (a later user builds a new one), and is never used from another loop. Everything
    per run stays per client: the API key and stream timeouts go with each request, and the
    client (its config, retries, event decoding) is the caller's own. Its pool has no
    connection cap (each stream holds a connection for its whole length; a cap would make the
    101st concurrent stream of a connection wait for a slot), as separate clients had none.
    """
    pool = _SHARED.setdefault(asyncio.get_running_loop(), {})
    key = (scope, _http_settings(config))
    entry = pool.get(key)
    if entry is None or entry.http.is_closed:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
        entry = pool[key] = _SharedHttp(client_class(config)._new_http(limits=limits))
    entry.users += 1
    client = client_class(config, http=entry.http)
    try:
        yield client
    finally:
        await client.aclose()  # borrowed: only forgets the shared client
        entry.users -= 1
        if entry.users == 0:
            if pool.get(key) is entry:
                del pool[key]
            await entry.http.aclose()
