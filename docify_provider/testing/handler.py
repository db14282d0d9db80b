"""HTTP request handling: routing, authentication, request faults and the endpoints.

One handler instance serves one connection (HTTP/1.1 keep-alive) in its own thread. Every
request is recorded with a key fingerprint, never the key itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from docify_provider.testing.errors import RequestError
from docify_provider.testing.faults import Fault
from docify_provider.testing.http_io import BodyReader, ClientGone
from docify_provider.testing.keys import fingerprint
from docify_provider.testing.records import DownloadRecord, RequestRecord, UploadRecord
from docify_provider.testing.runs import Run, produce, response_body
from docify_provider.testing.scenarios import Scenario
from docify_provider.testing.streaming import EventStream, play
from docify_provider.testing.uploads import parse_upload
from docify_provider.testing.validation import validate_run

if TYPE_CHECKING:
    from docify_provider.testing.emulator import DocifyEmulator

logger = logging.getLogger(__name__)

MAX_JSON_BODY = 1024 * 1024
MAX_DRAIN = 80 * 1024 * 1024
UNAUTHORIZED = "Unauthorized, API Key invalid"
FORBIDDEN = "Forbidden, insufficient permissions"
_ROUTES = {
    "/v1/scenario/info": ("info", "GET"),
    "/v1/scenario/run": ("run", "POST"),
    "/v1/scenario/run/streaming": ("stream", "POST"),
    "/v1/file/upload": ("upload", "POST"),
}
_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ClientGone)
_ZERO_PIECE = 256 * 1024


class DocifyRequestHandler(BaseHTTPRequestHandler):
    """Serves the Docify API under the emulator's prefix."""

    protocol_version = "HTTP/1.1"
    server_version = "DocifyEmulator/1.0"
    # Small keep-alive responses and SSE events must leave at once, as from a real server;
    # with Nagle's algorithm on, each waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    _status: int | None = None
    _recorded = False
    _key_fp: str | None = None
    _endpoint: str | None = None
    _reader: BodyReader | None = None
    _extra_headers: dict[str, str]

    @property
    def emulator(self) -> DocifyEmulator:
        return self.server.emulator  # type: ignore[attr-defined]

    # connection lifecycle --------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.emulator._track(self.connection, add=True)

    def finish(self) -> None:
        self.emulator._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # plumbing ---------------------------------------------------------------------------
    def _handle(self) -> None:
        self._status = self._key_fp = self._endpoint = self._reader = None
        self._recorded = False
        self._extra_headers = {}
        path = urlsplit(self.path).path
        self._key_fp = self._presented_key()
        try:
            self._reader = BodyReader(
                self.rfile, self.headers.get("Content-Length"), self.headers.get("Transfer-Encoding")
            )
            endpoint, detail = self._route(path)
            self._endpoint = endpoint
            fault = self.emulator.state.take_fault(endpoint, self._key_fp, "request")
            if fault is None or not self._request_fault(fault, endpoint):
                getattr(self, f"_do_{endpoint}")(detail)
        except _DISCONNECTS:
            self._abort()
        except Exception as exc:
            self._fail(exc, path)
        finally:
            if self._reader is not None and not self._reader.done:
                self.close_connection = True
            self._record()

    def _record(self) -> None:
        """Record this request once: when its headers go out, or when it is dropped or fails.

        Recording before the response is complete means a client that has its response can
        rely on the record (and counters) being there already.
        """
        if self._recorded:
            return
        self._recorded = True
        self.emulator.state.record_request(
            RequestRecord(
                method=self.command,
                path=urlsplit(self.path).path,
                endpoint=self._endpoint,
                has_auth="Authorization" in self.headers,
                key_fingerprint=self._key_fp,
                user_agent=self.headers.get("User-Agent"),
                host=self.headers.get("Host"),
                status=self._status,
            )
        )

    def end_headers(self) -> None:
        self._record()
        super().end_headers()

    def _fail(self, exc: Exception, path: str) -> None:
        if self._status is not None:  # response already started: nothing sane left to send
            logger.exception("emulator failure mid-response on %s %s", self.command, path)
            self._abort()
            return
        if isinstance(exc, RequestError):
            status, message = exc.status, exc.message
        else:
            logger.exception("emulator failure on %s %s", self.command, path)
            status, message = 500, "Internal server error"
        try:
            self._send_json(status, {"code": status, "message": message})
        except _DISCONNECTS:
            self._abort()

    def _presented_key(self) -> str | None:
        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        return fingerprint(token.strip()) if scheme.lower() == "bearer" and token.strip() else None

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

    def _drain(self) -> None:
        if self._reader is None or (not self._reader.done and not self._reader.drain(MAX_DRAIN)):
            self.close_connection = True

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json", headers)

    def _send(self, status: int, payload: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        try:
            self._drain()
        except (RequestError, *_DISCONNECTS):
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in {**self._extra_headers, **(headers or {})}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _abort(self) -> None:
        """Close the connection abruptly: no (further) response bytes."""
        self.close_connection = True
        self._record()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _request_fault(self, fault: Fault, endpoint: str) -> bool:
        """Apply a request-phase fault; True when it replaced the normal response."""
        logger.debug("applying fault %s to %s", fault.kind, endpoint)
        if fault.kind == "latency":
            if self.emulator.stopping.wait(float(fault.seconds or 0)):
                raise ConnectionAbortedError("emulator stopping")
            return False
        if fault.kind == "status":
            status = int(fault.status or 500)
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            message = fault.message or _reason(status)
            self._send_json(status, {"code": status, "message": message}, headers)
        elif fault.kind == "redirect":
            status = int(fault.status or 302)
            self._send_json(status, {"code": status, "message": "Moved"}, {"Location": str(fault.location)})
        elif fault.kind == "drop_before_response":
            if fault.run_started and endpoint in ("run", "stream"):
                with contextlib.suppress(RequestError):
                    self._start_run()
            self._drain()
            self._abort()
        return True

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
        self.emulator.state.record_download(
            DownloadRecord(
                token=token,
                file_name=attachment.name,
                size=attachment.size,
                has_auth="Authorization" in self.headers,
                host=self.headers.get("Host"),
                status=200,
            )
        )
        headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(attachment.name, safe='')}"}
        if attachment.generated_size is None:
            self._send(200, attachment.content, "application/octet-stream", headers)
        else:
            self._send_zeros(attachment.generated_size, headers)

    def _send_zeros(self, size: int, headers: dict[str, str]) -> None:
        """Send ``size`` zero bytes piece by piece: a multi-GB body without holding it anywhere.

        A client that stops reading early closes the socket; the next write fails and the
        request ends like any other disconnect.
        """
        self._drain()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        piece = memoryview(bytes(_ZERO_PIECE))
        remaining = size
        while remaining > 0:
            if self.emulator.stopping.is_set():
                raise ConnectionAbortedError("emulator stopping")
            self.wfile.write(piece[: min(remaining, _ZERO_PIECE)])
            remaining -= _ZERO_PIECE


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
