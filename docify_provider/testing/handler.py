"""HTTP request handling of the Docify emulator: routing, authentication and the endpoints.

The plumbing (records, request faults, error responses, body I/O) is in
:mod:`docify_provider.testing.base_handler`.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from docify_provider.testing.base_handler import EmulatorRequestHandler
from docify_provider.testing.errors import RequestError
from docify_provider.testing.faults import Fault
from docify_provider.testing.records import UploadRecord
from docify_provider.testing.runs import Run, produce, response_body
from docify_provider.testing.scenarios import Scenario
from docify_provider.testing.streaming import EventStream, play
from docify_provider.testing.uploads import parse_upload
from docify_provider.testing.validation import validate_run

if TYPE_CHECKING:
    from docify_provider.testing.emulator import DocifyEmulator

MAX_JSON_BODY = 1024 * 1024
UNAUTHORIZED = "Unauthorized, API Key invalid"
FORBIDDEN = "Forbidden, insufficient permissions"
_ROUTES = {
    "/v1/scenario/info": ("info", "GET"),
    "/v1/scenario/run": ("run", "POST"),
    "/v1/scenario/run/streaming": ("stream", "POST"),
    "/v1/file/upload": ("upload", "POST"),
}


class DocifyRequestHandler(EmulatorRequestHandler):
    """Serves the Docify API under the emulator's prefix."""

    server_version = "DocifyEmulator/1.0"

    @property
    def emulator(self) -> DocifyEmulator:
        return self.server.emulator  # type: ignore[attr-defined]

    def _error_body(self, status: int, message: str, code: str | None) -> dict[str, Any]:
        return {"code": status, "message": message}

    def _route(self, path: str) -> tuple[str, str]:
        prefix = self.emulator.prefix
        if not path.startswith(prefix + "/"):
            raise RequestError("Resource not found", 404)
        rest = path[len(prefix) :]
        if rest in _ROUTES:
            endpoint, method = _ROUTES[rest]
            allowed = {method}
        elif rest.startswith("/download/") and rest.count("/") in (2, 3) and rest.split("/")[2]:
            endpoint, allowed = "download", {"GET", "HEAD"}
        else:
            raise RequestError("Resource not found", 404)
        if self.command not in allowed:
            self._extra_headers = {"Allow": ", ".join(sorted(allowed))}
            raise RequestError(f"Method {self.command} not allowed", 405)
        return endpoint, rest

    # endpoints --------------------------------------------------------------------------
    def _authenticate(self) -> tuple[str, Scenario]:
        binding = self.emulator.state.binding(self._key_fp)
        if self._key_fp is None or binding is None:
            raise RequestError(UNAUTHORIZED, 401)
        if binding.forbidden:
            raise RequestError(FORBIDDEN, 403)
        scenario = self.emulator.scenarios.get(binding.scenario_code)
        if scenario is None:
            raise RequestError(f"Scenario {binding.scenario_code} is not available", 500)
        return self._key_fp, scenario

    def _do_info(self, _: str) -> None:
        _, scenario = self._authenticate()
        self._send_json(200, scenario.info())

    def _do_upload(self, _: str) -> None:
        key_fp, _scenario = self._authenticate()
        assert self._reader is not None
        parsed = parse_upload(self._reader, self.headers.get("Content-Type"))
        record = UploadRecord(
            key_fingerprint=key_fp,
            user=parsed.user or "",
            file_name=parsed.file_name or "",
            size=parsed.size,
            file_type=parsed.file_type or "",
            sha256=parsed.sha256,
            upload_file_oid=str(uuid.uuid4()),
            content_type=parsed.content_type,
            head=bytes(parsed.head),
        )
        self.emulator.state.add_upload(record)
        body = {
            "uploadFileOid": record.upload_file_oid,
            "fileName": record.file_name,
            "fileSize": record.size,
            "fileType": record.file_type,
        }
        self._send_json(200, body)

    def _start_run(self) -> tuple[Run, Fault | None]:
        """Authenticate, validate, count the run as started (billed) and produce its results."""
        key_fp, scenario = self._authenticate()
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise RequestError("Content-Type must be application/json", 415)
        assert self._reader is not None
        raw = self._reader.read_all(MAX_JSON_BODY)
        try:
            body = json.loads(raw)
        except ValueError:
            raise RequestError("Request body is not valid JSON") from None
        inputs, files = validate_run(body, scenario, lambda oid: self.emulator.state.uploaded_file(key_fp, oid))
        self.emulator.state.count_started(key_fp)
        run = Run(scenario=scenario, key_fp=key_fp)
        fault = self.emulator.state.take_fault(self._endpoint or "run", key_fp, "run")
        produce(run, inputs, files, fault, self.emulator.state)
        return run, fault

    def _do_run(self, _: str) -> None:
        run, _fault = self._start_run()
        if self.emulator.stopping.wait(run.scenario.latency):
            raise ConnectionAbortedError("emulator stopping")
        body = response_body(run, self.emulator.download_base)
        self.emulator.state.count_completed(run.key_fp)
        self._send_json(200, body)

    def _do_stream(self, _: str) -> None:
        run, fault = self._start_run()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        emu = self.emulator
        stream = EventStream(
            self.wfile.write,
            ping_interval=emu.ping_interval,
            event_lines=emu.sse_event_lines,
            line_ending=emu.line_ending,
            stopping=emu.stopping,
        )

        def final() -> dict[str, Any]:
            emu.state.count_completed(run.key_fp)
            return response_body(run, emu.download_base)

        if play(stream, run, fault, emu.event_interval, final) == "abort":
            self._abort()

    def _do_download(self, rest: str) -> None:
        if self.emulator.download_requires_auth:
            binding = self.emulator.state.binding(self._key_fp)
            if binding is None or binding.forbidden:
                raise RequestError(UNAUTHORIZED, 401)
        token = rest.split("/")[2]
        attachment = self.emulator.state.attachment(token)
        if attachment is None:
            raise RequestError("Resource not found", 404)
        self._serve_attachment(attachment, "application/octet-stream", "attachment")
