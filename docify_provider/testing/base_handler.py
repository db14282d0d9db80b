"""The request-handler plumbing shared by the emulators (Docify and Dify).

One handler instance serves one connection (HTTP/1.1 keep-alive) in its own thread. Every
request is recorded with a key fingerprint, never the key itself; request-phase faults
(latency, status, drops, redirects) are applied before the endpoint runs, like a proxy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from docify_provider.testing.errors import RequestError
from docify_provider.testing.faults import Fault
from docify_provider.testing.http_io import BodyReader, ClientGone
from docify_provider.testing.keys import fingerprint
from docify_provider.testing.records import DownloadRecord, RequestRecord, StoredAttachment

if TYPE_CHECKING:
    from docify_provider.testing.server import EmulatorServer

logger = logging.getLogger(__name__)

MAX_DRAIN = 80 * 1024 * 1024
DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ClientGone)
_ZERO_PIECE = 256 * 1024


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    """Plumbing shared by the emulators' handlers: records, faults, errors, body I/O.

    Subclasses implement ``_route(path) -> (endpoint, detail)``, the ``_do_<endpoint>``
    methods, ``_error_body`` and (for ``drop_before_response(run_started=True)``) ``_start_run``.
    """

    #: Endpoints whose request starts a run (for ``drop_before_response(run_started=True)``).
    run_endpoints: frozenset[str] = frozenset({"run", "stream"})

    protocol_version = "HTTP/1.1"
    server_version = "Emulator/1.0"
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
    def emulator(self) -> EmulatorServer:
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
            if self._serve_tool_page(path):
                return
            endpoint, detail = self._route(path)
            self._endpoint = endpoint
            fault = self.emulator.state.take_fault(endpoint, self._key_fp, "request")
            if fault is None or not self._request_fault(fault, endpoint):
                getattr(self, f"_do_{endpoint}")(detail)
        except DISCONNECTS:
            self._abort()
        except Exception as exc:
            self._fail(exc, path)
        finally:
            if self._reader is not None and not self._reader.done:
                self.close_connection = True
            self._record()

    def _serve_tool_page(self, path: str) -> bool:
        """Serve one of the emulator's own pages (``emulator.tool_pages()``); False for any other path.

        They are the emulator as a tool (its counters, the OpenAPI's device-login page), not the
        emulated API: no fault reaches them and they are not recorded, so reading the counters
        does not change them.
        """
        page = self.emulator.tool_pages().get(path)
        if page is None:
            return False
        self._recorded = True
        page(self)
        return True

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
            self._send_json(status, self._error_body(status, message, getattr(exc, "code", None)))
        except DISCONNECTS:
            self._abort()

    def _presented_key(self) -> str | None:
        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        return fingerprint(token.strip()) if scheme.lower() == "bearer" and token.strip() else None

    def _drain(self) -> None:
        if self._reader is None or (not self._reader.done and not self._reader.drain(MAX_DRAIN)):
            self.close_connection = True

    def _send_json(
        self, status: int, body: Any, headers: dict[str, str] | None = None, *, ensure_ascii: bool = False
    ) -> None:
        self._send(status, json.dumps(body, ensure_ascii=ensure_ascii).encode("utf-8"), "application/json", headers)

    def _send(self, status: int, payload: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        try:
            self._drain()
        except (RequestError, *DISCONNECTS):
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
            message = fault.message or reason(status)
            self._send_json(status, self._error_body(status, message, fault.code), headers)
        elif fault.kind == "redirect":
            status = int(fault.status or 302)
            self._send_json(status, self._error_body(status, "Moved", None), {"Location": str(fault.location)})
        elif fault.kind == "drop_before_response":
            if fault.run_started and endpoint in self.run_endpoints:
                with contextlib.suppress(RequestError):
                    self._start_run()
            self._drain()
            self._abort()
        return True

    # hooks ------------------------------------------------------------------------------
    def _route(self, path: str) -> tuple[str, str]:
        """Map a path to ``(endpoint, detail)``; raise :class:`RequestError` 404/405."""
        raise NotImplementedError

    def _error_body(self, status: int, message: str, code: str | None) -> dict[str, Any]:
        """The JSON body of an error response."""
        raise NotImplementedError

    def _start_run(self) -> object:
        """Validate the request and start its run (counted as started)."""
        raise NotImplementedError

    def _serve_attachment(self, attachment: StoredAttachment, ctype: str, disposition: str) -> None:
        """Record a download of ``attachment`` and send it (generated zeros for a sized one)."""
        self.emulator.state.record_download(
            DownloadRecord(
                token=attachment.token,
                file_name=attachment.name,
                size=attachment.size,
                has_auth="Authorization" in self.headers,
                host=self.headers.get("Host"),
                status=200,
            )
        )
        headers = {"Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(attachment.name, safe='')}"}
        if attachment.generated_size is None:
            self._send(200, attachment.content, ctype, headers)
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


def reason(status: int) -> str:
    """The standard reason phrase of ``status`` ("Error" for unknown codes)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
