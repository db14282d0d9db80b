"""The blocking Docify client, used by hooks and operators on Airflow workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from docify_provider._core.transport import CHUNK, SyncHTTP
from docify_provider.client.base import ClientBase
from docify_provider.client.errors import DocifyProtocolError
from docify_provider.client.models import FileType, RunResult, ScenarioInfo, StreamEvent, UploadedFile
from docify_provider.client.sse import StreamTracker, raise_if_failed

log = logging.getLogger(__name__)

__all__ = ["CHUNK", "DocifyClient"]


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
