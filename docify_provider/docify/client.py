"""Docify's clients: ``DocifyClient`` (workers) and ``AsyncDocifyClient`` (the triggerer).

The transport (``docify_provider._core.transport``: httpx arguments, answer checking, retries,
downloads, stream reading) is every backend's; ``ClientBase`` adds Docify's request bodies and the
upload checks of its file rules, once for both clients. The two clients differ only in transport.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from docify_provider._core.transport import _SHARED, CHUNK, MAX_REDIRECTS, AsyncHTTP, HTTPBase, SyncHTTP, ssl_context
from docify_provider._core.transport import shared_async_client as core_shared_async_client
from docify_provider.docify.config import ClientConfig
from docify_provider.docify.errors import DocifyProtocolError
from docify_provider.docify.files import UploadSource, open_upload_source
from docify_provider.docify.inputs import normalize_inputs, validate_inputs
from docify_provider.docify.models import FileType, RunResult, ScenarioInfo, StreamEvent, UploadedFile
from docify_provider.docify.protocol import DocifyProtocol
from docify_provider.docify.stream import StreamTracker, raise_if_failed

log = logging.getLogger(__name__)

__all__ = [
    "CHUNK",
    "MAX_REDIRECTS",
    "_SHARED",
    "AsyncDocifyClient",
    "ClientBase",
    "DocifyClient",
    "shared_async_client",
    "ssl_context",
]


class ClientBase(HTTPBase):
    """Docify's requests over the shared transport (mixed with ``SyncHTTP`` or ``AsyncHTTP``)."""

    protocol: type[DocifyProtocol] = DocifyProtocol

    def __init__(self, config: ClientConfig, *, protocol: type[DocifyProtocol] | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        if protocol is not None:
            self.protocol = protocol

    def _run_body(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None,
        additional_info: Any,
        scenario: ScenarioInfo | None,
    ) -> dict[str, Any]:
        wire = normalize_inputs(inputs)
        if scenario is not None:
            validate_inputs(scenario, wire)
        return self.protocol.run_body(wire, user=user or self.config.default_user, additional_info=additional_info)

    def _upload_request(
        self,
        source: Any,
        *,
        user: str | None,
        file_type: FileType | str | None,
        file_name: str | None,
        stack: contextlib.ExitStack,
    ) -> tuple[UploadSource, Callable[[], dict[str, Any]]]:
        """Check ``source`` against Docify's rules (before any request); return per-attempt kwargs."""
        upload = open_upload_source(source, file_name=file_name, file_type=file_type)
        fields = self.protocol.upload_fields(user=user or self.config.default_user)
        return upload, self._upload_kwargs(upload, fields, stack)


class DocifyClient(ClientBase, SyncHTTP):
    """Synchronous client for one API key (one scenario). Thread-safe; close it when done."""

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
        stream, response = self._open_stream(endpoint, json=body)
        yield from self._read_stream(stream, response, endpoint, StreamTracker(str(endpoint), self.protocol))

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


class AsyncDocifyClient(ClientBase, AsyncHTTP):
    """Asynchronous client for one API key; use ``async with`` or ``await aclose()``."""

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
            upload, make_kwargs = self._upload_request(
                source, user=user, file_type=file_type, file_name=file_name, stack=stack
            )
            uploaded = self.protocol.parse_upload(await self._call(self.protocol.UPLOAD, make_kwargs))
        log.info("Uploaded %s (%s bytes) to Docify as %s", upload.name, upload.size, uploaded.upload_file_oid)
        return uploaded

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
        stream, response = await self._open_stream(endpoint, json=body)
        async for event in self._read_stream(stream, response, endpoint, StreamTracker(str(endpoint), self.protocol)):
            yield event

    async def run_streaming(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        on_event: Callable[[StreamEvent], None] | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """Consume ``stream`` to the end and return the COMPLETE result, calling ``on_event`` for each event."""
        result: RunResult | None = None
        async for event in self.stream(inputs, **kwargs):
            if on_event is not None:
                on_event(event)
            if event.response is not None and event.type == "COMPLETE":
                result = event.response
        if result is None:  # pragma: no cover - stream() raises before this
            raise DocifyProtocolError("Stream finished without a result")
        return result


def shared_async_client(config: Any, *, scope: str) -> contextlib.AbstractAsyncContextManager[AsyncDocifyClient]:
    """An ``AsyncDocifyClient`` over the httpx client its connection shares in this event loop.

    See ``docify_provider._core.transport.shared_async_client``.
    """
    return core_shared_async_client(config, scope=scope, client_class=AsyncDocifyClient)
