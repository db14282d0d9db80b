"""Docify's client I/O, written once: ``_async/client.py`` (``AsyncDocifyClient``, the triggerer's)
is the hand-written source and ``_sync/client.py`` (``DocifyClient``, the workers') is generated
from it by ``scripts/unasync.py``.

Request bodies and upload checks are ``ClientBase``'s (``client_base``), the transport
(retries, downloads, stream reading) ``_core``'s. Import the clients from ``docify.client``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from docify_provider._core.transport import AsyncHTTP
from docify_provider._core.wording import sized
from docify_provider.docify.client_base import ClientBase
from docify_provider.docify.errors import DocifyProtocolError
from docify_provider.docify.models import FileType, RunResult, ScenarioInfo, StreamEvent, UploadedFile
from docify_provider.docify.stream import StreamTracker, raise_if_failed

#: The public module's name, whichever file logs (log configuration keys on it).
log = logging.getLogger("docify_provider.docify.client")


class AsyncDocifyClient(ClientBase, AsyncHTTP):
    """Docify client for one API key (one scenario); close it when done, or use it as a context manager.

    The sync form is thread-safe; the async form belongs to one event loop.
    """

    # -- API ------------------------------------------------------------------------------------

    async def get_scenario_info(self) -> ScenarioInfo:
        """``GET /v1/scenario/info``: the scenario bound to the key. Free; retried when safe."""
        return self.protocol.parse_info(await self._call(self.protocol.INFO))

    async def upload_file(
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
            uploaded = self.protocol.parse_upload(await self._call(self.protocol.UPLOAD, make_kwargs))
        log.info("Uploaded %s%s to Docify as %s", upload.name, sized(upload.size), uploaded.upload_file_oid)
        return uploaded

    async def run(
        self,
        inputs: Mapping[str, Any] | None,
        *,
        user: str | None = None,
        additional_info: Any = None,
        scenario: ScenarioInfo | None = None,
    ) -> RunResult:
        """``POST /v1/scenario/run`` (blocking mode). Never re-sent once it may have reached the server.

        With ``scenario``, inputs are validated against its parameters first. A run that reports
        ``isSuccess`` false raises ``DocifyRunFailedError`` carrying the server's result.
        """
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
        """``POST /v1/scenario/run/streaming``: yield events as they arrive, ending with COMPLETE.

        Raises ``DocifyRunFailedError`` on an ERROR event or a failed COMPLETE, and
        ``DocifyStreamIncompleteError`` (an outcome-unknown error) when the stream ends without either.
        """
        # Inputs are checked now, when the call is made; the request goes out on first iteration.
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
