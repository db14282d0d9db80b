"""How the current Dify server differs from its documents on the OpenAPI's streams (Part C).

``CurrentServerHandler`` sits between the Service-API handler and the OpenAPI handler; each of
its behaviours applies only when the emulator's ``server_profile`` is ``"current"`` (the default),
so that ``"documented"`` keeps the wire of Dify's documents for the tests that pin it.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from docify_provider.testing.dify.handler import DifyRequestHandler
from docify_provider.testing.dify.streaming import TERMINAL, dify_stream, pump

if TYPE_CHECKING:
    from docify_provider.testing.dify.runs import DifyRun
    from docify_provider.testing.dify_openapi.emulator import DifyOpenAPIEmulator

#: The hint of a current server's 401 ``token_expired`` (Part C6).
TOKEN_EXPIRED_HINT = "Re-authenticate to continue (e.g. re-run your login command)"  # noqa: S105 (not a secret)
#: Current servers answer an unknown (or revoked) token with this message (Part C6).
UNKNOWN_TOKEN = "Invalid or unknown bearer token."  # noqa: S105 (a message)
#: Input errors that stay a synchronous 400 on a current server: the file mappings are built in
#: the API process before the run is handed to the worker (C1); every other input check runs there.
_FILE_MAPPING_ERRORS = ("Invalid ", "File validation failed")


class WorkerRejected(Exception):
    """A current server accepted the run (HTTP 200) and its worker rejected it (C1)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def file_mapping_error(message: str) -> bool:
    """Whether an input error is one of the file mappings' (a synchronous 400 on a current server)."""
    return message.startswith(_FILE_MAPPING_ERRORS) or "must be a file" in message


def upper_case_reasons(event: dict[str, Any]) -> dict[str, Any]:
    """A ``workflow_paused`` event with its reasons' kind under ``TYPE``, as a current server keys it (C4)."""
    data = dict(event.get("data") or {})
    data["reasons"] = [{("TYPE" if k == "type" else k): v for k, v in r.items()} for r in data.get("reasons") or []]
    return {**event, "data": data}


class CurrentServerHandler(DifyRequestHandler):
    """The worker's ``error`` frame (C1) and the re-attach of a current server (C3)."""

    @property
    def emulator(self) -> DifyOpenAPIEmulator:
        return self.server.emulator  # type: ignore[attr-defined]

    def _worker_error(self, message: str) -> None:
        """C1: HTTP 200, a ping, one ``error`` frame without code or ids (``status`` 500); the
        body then stays open, pings only, until the idle close (or until the client closes it)."""
        emu = self.emulator
        self._stream_headers()
        channel: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        channel.put({"event": "error", "message": message, "status": 500})
        stream = dify_stream(self.wfile.write, emu.ping_interval, emu.stopping)
        ending = "client closed"
        try:
            ending = pump(
                stream,
                channel,
                ping_interval=emu.ping_interval,
                idle_close=emu.idle_close_seconds,
                terminal=frozenset(),
                fault=None,
                stopping=emu.stopping,
            )
        finally:
            emu.worker_error_streams.append(ending)

    def _reattach(self, run: DifyRun, key_fp: str, query: Mapping[str, str]) -> None:
        """B7 as a current server does it (C3): with ``continue_on_pause`` no event ends the body
        (held open after ``workflow_finished`` until the idle close), and the one frame of an
        already finished run carries the run id as its ``task_id``."""
        if not self.emulator.current:
            super()._reattach(run, key_fp, query)
            return
        self._stream_fault = self.emulator.state.take_fault("events", key_fp, "run")
        snapshot = query.get("include_state_snapshot", "false").lower() == "true"
        channel = run.subscribe_unless_finished(snapshot)
        self._stream_headers(("Cache-Control", "no-cache"), ("Connection", "keep-alive"))
        if channel is None:
            finished = {**run.envelope("workflow_finished", run.finished_data()), "task_id": run.id}
            stream = dify_stream(self.wfile.write, None, self.emulator.stopping)
            stream.frame("", json.dumps(finished))
            stream.end()
            return
        continue_on_pause = query.get("continue_on_pause", "false").lower() == "true"
        self._relay(run, channel, frozenset() if continue_on_pause else TERMINAL)
