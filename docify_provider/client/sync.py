"""The blocking Docify client, used by hooks and operators on Airflow workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import httpx
from httpx_sse import EventSource, SSEError
from tenacity import Retrying

from docify_provider.client.base import ClientBase
from docify_provider.client.errors import DocifyProtocolError, DocifyRunTimeoutError
from docify_provider.client.http_errors import error_for_transport
from docify_provider.client.models import FileType, RunResult, ScenarioInfo, StreamEvent, UploadedFile
from docify_provider.client.protocol import Endpoint
from docify_provider.client.retries import retry_kwargs
from docify_provider.client.sse import StreamTracker, raise_if_failed

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


class DocifyClient(ClientBase):
    """Synchronous client for one API key (one scenario). Thread-safe; close it when done."""

    def __init__(self, config: Any, *, transport: httpx.BaseTransport | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
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

    def __enter__(self) -> DocifyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _request(self, endpoint: Endpoint, **kwargs: Any) -> httpx.Response:
        """Send once: a read, checked answer or a typed error."""
        try:
            response = self.http.request(endpoint.method, endpoint.path, headers=self._auth(), **kwargs)
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, endpoint) from None
        self._check(response, endpoint)
        return response

    def _call(self, endpoint: Endpoint, make_kwargs: Callable[[], dict[str, Any]] = dict) -> Any:
        """Send with the retry policy for ``endpoint``; return the parsed JSON."""
        for attempt in Retrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                return self._json(self._request(endpoint, **make_kwargs()), endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- API ------------------------------------------------------------------------------------

    def get_scenario_info(self) -> ScenarioInfo:
        """``GET /v1/scenario/info``: the scenario bound to the key. Free; retried when safe."""
        return self.protocol.parse_info(self._call(self.protocol.INFO))

    def upload_file(
        self,
        source: Any,
        *,
        user: str | None = None,
        file_type: FileType | str | None = None,
        file_name: str | None = None,
    ) -> UploadedFile:
        """``POST /v1/file/upload``, streamed from ``source`` without reading it into memory."""
        with contextlib.ExitStack() as stack:
            upload, make_kwargs = self._upload_request(
                source, user=user, file_type=file_type, file_name=file_name, stack=stack
            )
            uploaded = self.protocol.parse_upload(self._call(self.protocol.UPLOAD, make_kwargs))
        log.info("Uploaded %s (%s bytes) to Docify as %s", upload.name, upload.size, uploaded.upload_file_oid)
        return uploaded

    def run(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        additional_info: Any = None,
        scenario: ScenarioInfo | None = None,
    ) -> RunResult:
        """``POST /v1/scenario/run`` (blocking). Never re-sent once it may have reached the server.

        With ``scenario``, inputs are validated against its parameters first. A run that reports
        ``isSuccess`` false raises ``DocifyRunFailedError`` carrying the server's result.
        """
        endpoint = self.protocol.RUN
        body = self._run_body(inputs, user=user, additional_info=additional_info, scenario=scenario)
        result = self.protocol.parse_run(self._call(endpoint, lambda: {"json": body}))
        return raise_if_failed(result, str(endpoint))

    def stream(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        additional_info: Any = None,
        scenario: ScenarioInfo | None = None,
    ) -> Iterator[StreamEvent]:
        """``POST /v1/scenario/run/streaming``: yield events as they arrive, ending with COMPLETE.

        Raises ``DocifyRunFailedError`` on an ERROR event or a failed COMPLETE, and
        ``DocifyStreamIncompleteError`` (an outcome-unknown error) when the stream ends without either.
        """
        # Inputs are checked now, when the call is made; the request goes out on first iteration.
        body = self._run_body(inputs, user=user, additional_info=additional_info, scenario=scenario)
        return self._events(body)

    def _events(self, body: dict[str, Any]) -> Iterator[StreamEvent]:
        endpoint = self.protocol.STREAM
        for attempt in Retrying(**retry_kwargs(self.config, endpoint)):
            with attempt:
                stream = self.http.stream(**self._stream_request(body))
                try:
                    response = stream.__enter__()
                except httpx.HTTPError as exc:
                    raise error_for_transport(exc, endpoint) from None
        yield from self._read_stream(stream, response, endpoint)

    def _read_stream(
        self, stream: contextlib.AbstractContextManager[Any], response: httpx.Response, endpoint: Endpoint
    ) -> Iterator[StreamEvent]:
        tracker = StreamTracker(str(endpoint), self.protocol)
        try:
            if response.status_code >= 300:
                response.read()
                self._check(response, endpoint)
            text = self._event_text(response)
            try:
                for sse in EventSource(text).iter_sse():  # type: ignore[arg-type]
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
            stream.__exit__(None, None, None)

    def run_streaming(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        on_event: Callable[[StreamEvent], None] | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """Consume ``stream`` to the end and return the COMPLETE result, calling ``on_event`` for each event."""
        result: RunResult | None = None
        for event in self.stream(inputs, **kwargs):
            if on_event is not None:
                on_event(event)
            if event.response is not None and event.type == "COMPLETE":
                result = event.response
        if result is None:  # pragma: no cover - stream() raises before this
            raise DocifyProtocolError("Stream finished without a result")
        return result

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
        endpoint = self.protocol.DOWNLOAD
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
                raise error_for_transport(exc, endpoint) from None
        raise AssertionError("unreachable")  # pragma: no cover
