"""The server framework shared by the bundled emulators (Docify and Dify).

:class:`EmulatorServer` owns the listening socket, the serving thread, the open connections
and the thread-safe state (keys, faults, records, counters); each emulator adds its API.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from docify_provider.testing.counters import COUNTERS_PATH, counters_page
from docify_provider.testing.faults import Fault
from docify_provider.testing.records import DownloadRecord, RequestRecord, UploadRecord
from docify_provider.testing.state import EmulatorState

if TYPE_CHECKING:
    from docify_provider.testing.base_handler import EmulatorRequestHandler

logger = logging.getLogger(__name__)

#: One of the emulator's own pages: it answers the request on the handler it is given.
ToolPage = Callable[["EmulatorRequestHandler"], None]

_Self = TypeVar("_Self", bound="EmulatorServer")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # listen() backlog: the socketserver default of 5 refuses (or delays by SYN retries) a burst of
    # simultaneous connects, e.g. a triggerer starting 1,000 streams at once. The kernel caps it
    # at net.core.somaxconn.
    request_queue_size = 2048

    def __init__(
        self, address: tuple[str, int], emulator: EmulatorServer, handler: type[BaseHTTPRequestHandler]
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), slow on some hosts.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection error from %s", client_address, exc_info=True)


class EmulatorServer:
    """A real HTTP/1.1 server on a daemon thread: ``with Emulator() as emu: ...``.

    Subclasses set ``handler_class`` (the request handler), ``name`` (for logs and the
    thread), ``mode`` (the command line's ``--mode``) and usually a richer ``state``.
    """

    handler_class: type[BaseHTTPRequestHandler]
    name = "emulator"
    mode: str

    def __init__(self, host: str, port: int, state: EmulatorState) -> None:
        self.host = host
        self._requested_port = port
        self.state = state
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

    # lifecycle ----------------------------------------------------------------------------
    def start(self: _Self) -> _Self:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = _Server((self.host, self._requested_port), self, self.handler_class)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()
        logger.info("%s listening on %s", self.name, self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (streams in flight are cut)."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self: _Self) -> _Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # addresses ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (the requested one before ``start()``)."""
        return int(self._server.server_address[1]) if self._server else self._requested_port

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL (no trailing slash)."""
        return f"http://{self.netloc}"

    # faults -------------------------------------------------------------------------------
    def inject(self, fault: Fault) -> Fault:
        """Add a fault (matched per request, in injection order); returns it."""
        return self.state.inject(fault)

    def clear_faults(self) -> None:
        self.state.clear_faults()

    @property
    def faults(self) -> list[Fault]:
        return self.state.faults()

    # observations -------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of every request seen, in arrival-completion order."""
        return self.state.requests()

    @property
    def uploads(self) -> list[UploadRecord]:
        return self.state.uploads()

    @property
    def downloads(self) -> list[DownloadRecord]:
        return self.state.downloads()

    def reset(self) -> None:
        """Forget records, counters, uploads, attachments and faults (keys stay)."""
        self.state.reset()

    # the emulator as a tool ---------------------------------------------------------------
    def tool_pages(self) -> dict[str, ToolPage]:
        """The emulator's own pages by path, at the root whatever the API prefix (not recorded,
        no faults): ``/_emulator/counters`` on every mode."""
        return {COUNTERS_PATH: counters_page}

    def counters(self) -> dict[str, Any]:
        """What ``GET /_emulator/counters`` serves and the command prints when it stops.

        ``runs_started`` are the runs that passed validation and were started (what a real server
        bills: ``emu.runs_started()``), ``runs_completed`` those that reached their end,
        ``uploads`` and ``downloads`` the accepted ones, ``requests`` every API request seen
        (``emu.requests``; these pages excluded). Subclasses add what their API has.
        """
        state = self.state
        return {
            "mode": self.mode,
            "runs_started": state.total("started"),
            "runs_completed": state.total("completed"),
            "uploads": len(state.uploads()),
            "downloads": len(state.downloads()),
            "requests": len(state.requests()),
        }
