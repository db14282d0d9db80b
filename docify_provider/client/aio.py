"""The asyncio Docify client, used by triggers in the triggerer (one event loop, many runs).

Same models, errors, validation, retry rules and event decoding as ``sync.DocifyClient``; only
the transport is asynchronous.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from docify_provider._core.transport import _SHARED, AsyncHTTP  # _SHARED: the per-loop registry tests inspect
from docify_provider._core.transport import shared_async_client as core_shared_async_client
from docify_provider.client.base import ClientBase
from docify_provider.client.models import FileType, RunResult, ScenarioInfo, StreamEvent, UploadedFile
from docify_provider.client.sse import StreamTracker, raise_if_failed

__all__ = ["_SHARED", "AsyncDocifyClient", "shared_async_client"]


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
        stream, response = await self._open_stream(endpoint, json=body)
        async for event in self._read_stream(stream, response, endpoint, StreamTracker(str(endpoint), self.protocol)):
            yield event


def shared_async_client(config: Any, *, scope: str) -> contextlib.AbstractAsyncContextManager[AsyncDocifyClient]:
    """An ``AsyncDocifyClient`` over the httpx client its connection shares in this event loop.

    See ``docify_provider._core.transport.shared_async_client``.
    """
    return core_shared_async_client(config, scope=scope, client_class=AsyncDocifyClient)
