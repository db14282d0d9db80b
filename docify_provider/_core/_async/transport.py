"""The transport's I/O: requests with retries, downloads and event streams over httpx.

``_async/transport.py`` (``AsyncHTTP``, the triggerer's) is the hand-written source and
``_sync/transport.py`` (``SyncHTTP``, the workers') is generated from it by ``scripts/unasync.py``,
so the two cannot drift. What is sent and how answers are read is ``HTTPBase``'s
(``transport_base``); here is only driving httpx.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import IO, TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource, SSEError
from tenacity import AsyncRetrying

from docify_provider._core.errors import RunTimeoutError
from docify_provider._core.http_errors import error_for_transport
from docify_provider._core.retries import retry_kwargs
from docify_provider._core.transport_base import CHUNK, DOWNLOAD, HTTPBase, StreamVerdict

if TYPE_CHECKING:
    from typing_extensions import Self

    from docify_provider._core.endpoints import Endpoint


class AsyncHTTP(HTTPBase):
    """One client's transport; close it when done (a context manager closes it on exit).

    The sync form is thread-safe; the async form belongs to one event loop.
    """

    def __init__(
        self,
        config: Any,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ):
        """``http``: an httpx client to borrow (the triggerer's per-loop pool, ``shared_async_client``);
        the borrower never closes it."""
        super().__init__(config)
        self._transport = transport
        self._client: httpx.AsyncClient | None = http
        self._owns_client = http is None

    @property
    def http(self) -> httpx.AsyncClient:
        """The httpx client, built on first use."""
        if self._client is None:
            self._client = self._new_http()
        return self._client

    def _new_http(self, **overrides: Any) -> httpx.AsyncClient:
        """An httpx client built from this client's config; ``overrides`` replace its arguments."""
        kwargs = {**self._client_kwargs(), **overrides}
        mounts = self._proxy_mounts(httpx.AsyncHTTPTransport)
        return httpx.AsyncClient(transport=self._transport, mounts=mounts, **kwargs)

    async def aclose(self) -> None:
        """Close the httpx client if this client built it (a borrowed one is only forgotten)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
        self._owns_client = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- plumbing -------------------------------------------------------------------------------

    async def _request(self, endpoint: Endpoint, **kwargs: Any) -> httpx.Response:
        """Send once: a read, checked answer or a typed error."""
        try:
            response = await self.http.request(endpoint.method, endpoint.path, headers=self._auth(), **kwargs)
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, endpoint, self.errors) from None
        self._check(response, endpoint)
        return response

    async def _call(self, endpoint: Endpoint, make_kwargs: Callable[[], dict[str, Any]] = dict) -> Any:
        """Send with the retry policy for ``endpoint``; return the parsed JSON."""
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
        """Stream ``url`` into the sink ``open_sink()`` returns (written synchronously); return the byte count.

        The key goes only to trusted hosts, redirects are followed by hand so that each hop is
        checked, and the body is cut off as soon as it exceeds the declared ``fileSize``.
        """
        endpoint = DOWNLOAD
        self._check_declared_size(expected_size, max_bytes, url)
        async for attempt in AsyncRetrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                return await self._download_once(url, open_sink, expected_size, max_bytes, endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _download_once(
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
                async with self.http.stream("GET", current, headers=self._download_headers(current)) as response:
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
        """Open a stream (retried by the shared policy: a run only when it certainly never left).

        A repeatable stream (a re-attach) answered with an error status is checked here, inside the
        retry, so that a 429 or 502/503/504/524 to it is retried like any other read; a run's error
        answer is left to ``_read_stream``.
        """
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
        """Events of an open stream as the backend's ``tracker`` decodes them, up to a terminal one.

        At the end of the body without a terminal event ``tracker.finish()`` decides (raise, or
        let the caller re-attach); a broken stream raises the typed error with what was seen.
        """
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
