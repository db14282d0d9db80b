"""The asyncio Docify client, used by triggers in the triggerer (one event loop, many runs).

Same models, errors, validation, retry rules and event decoding as ``sync.DocifyClient``; only
the transport is asynchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from typing import IO, Any

import httpx
from httpx_sse import EventSource, SSEError
from tenacity import AsyncRetrying

from docify_provider.client.base import ClientBase
from docify_provider.client.errors import DocifyRunTimeoutError
from docify_provider.client.http_errors import error_for_transport
from docify_provider.client.models import FileType, RunResult, ScenarioInfo, StreamEvent, UploadedFile
from docify_provider.client.protocol import Endpoint
from docify_provider.client.retries import retry_kwargs
from docify_provider.client.sse import StreamTracker, raise_if_failed
from docify_provider.client.sync import CHUNK


class AsyncDocifyClient(ClientBase):
    """Asynchronous client for one API key; use ``async with`` or ``await aclose()``."""

    def __init__(
        self,
        config: Any,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
        **kwargs: Any,
    ):
        """``http``: an ``httpx.AsyncClient`` to borrow (see ``shared_async_client``); not closed by ``aclose``."""
        super().__init__(config, **kwargs)
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

    async def __aenter__(self) -> AsyncDocifyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, endpoint: Endpoint, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(endpoint.method, endpoint.path, headers=self._auth(), **kwargs)
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, endpoint) from None
        self._check(response, endpoint)
        return response

    async def _call(self, endpoint: Endpoint, make_kwargs: Callable[[], dict[str, Any]] = dict) -> Any:
        async for attempt in AsyncRetrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                return self._json(await self._request(endpoint, **make_kwargs()), endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_scenario_info(self) -> ScenarioInfo:
        return self.protocol.parse_info(await self._call(self.protocol.INFO))

    async def upload_file(
        self,
        source: Any,
        *,
        user: str | None = None,
        file_type: FileType | str | None = None,
        file_name: str | None = None,
    ) -> UploadedFile:
        with contextlib.ExitStack() as stack:
            _, make_kwargs = self._upload_request(
                source, user=user, file_type=file_type, file_name=file_name, stack=stack
            )
            return self.protocol.parse_upload(await self._call(self.protocol.UPLOAD, make_kwargs))

    async def run(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        additional_info: Any = None,
        scenario: ScenarioInfo | None = None,
    ) -> RunResult:
        endpoint = self.protocol.RUN
        body = self._run_body(inputs, user=user, additional_info=additional_info, scenario=scenario)
        result = self.protocol.parse_run(await self._call(endpoint, lambda: {"json": body}))
        return raise_if_failed(result, str(endpoint))

    def stream(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        additional_info: Any = None,
        scenario: ScenarioInfo | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Async twin of ``DocifyClient.stream``; inputs are checked at call time."""
        body = self._run_body(inputs, user=user, additional_info=additional_info, scenario=scenario)
        return self._events(body)

    async def _events(self, body: dict[str, Any]) -> AsyncIterator[StreamEvent]:
        endpoint = self.protocol.STREAM
        async for attempt in AsyncRetrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                stream = self.http.stream(**self._stream_request(body))
                try:
                    response = await stream.__aenter__()
                except httpx.HTTPError as exc:
                    raise error_for_transport(exc, endpoint) from None
        tracker = StreamTracker(str(endpoint), self.protocol)
        try:
            if response.status_code >= 300:
                await response.aread()
                self._check(response, endpoint)
            text = self._event_text(response)
            try:
                async for sse in EventSource(text).aiter_sse():  # type: ignore[arg-type]
                    event = tracker.feed(sse)
                    if event is not None:
                        text.event_seen()
                        yield event
                        if event.is_terminal:
                            return
            except (SSEError, httpx.HTTPError, DocifyRunTimeoutError) as exc:  # timeout: only keep-alives arrived
                raise self._stream_failure(exc, tracker, response) from None
            tracker.finish()
        finally:
            await stream.__aexit__(None, None, None)

    async def download(
        self,
        url: str,
        open_sink: Callable[[], contextlib.AbstractContextManager[IO[bytes]]],
        *,
        expected_size: int | None = None,
        max_bytes: int | None = None,
    ) -> int:
        """Async twin of ``DocifyClient.download`` (the sink is written synchronously)."""
        endpoint = self.protocol.DOWNLOAD
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
                        raise error_for_transport(exc, endpoint) from None
        raise AssertionError("unreachable")  # pragma: no cover


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
async def shared_async_client(config: Any, *, scope: str) -> AsyncIterator[AsyncDocifyClient]:
    """An ``AsyncDocifyClient`` for ``config`` over the ``httpx.AsyncClient`` that every user of the same
    ``scope`` (a connection id) and transport settings shares in the running event loop.

    A triggerer runs many triggers in one loop: building a client per stream costs ~1 ms of CPU and
    its own connection pool. The shared client is built by the first user and closed when the last
    one leaves (a later user builds a new one), and is never used from another loop. Everything
    per run stays per client: the API key and stream timeouts go with each request, and the
    ``AsyncDocifyClient`` (its config, retries, event decoding) is the caller's own. Its pool has no
    connection cap (each stream holds a connection for its whole length; a cap would make the
    101st concurrent stream of a connection wait for a slot), as separate clients had none.
    """
    pool = _SHARED.setdefault(asyncio.get_running_loop(), {})
    key = (scope, _http_settings(config))
    entry = pool.get(key)
    if entry is None or entry.http.is_closed:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
        entry = pool[key] = _SharedHttp(AsyncDocifyClient(config)._new_http(limits=limits))
    entry.users += 1
    client = AsyncDocifyClient(config, http=entry.http)
    try:
        yield client
    finally:
        await client.aclose()  # borrowed: only forgets the shared client
        entry.users -= 1
        if entry.users == 0:
            if pool.get(key) is entry:
                del pool[key]
            await entry.http.aclose()
