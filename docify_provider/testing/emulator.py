"""``DocifyEmulator``: a real HTTP/1.1 Docify API server on localhost for tests and demos.

Clients are tested against real sockets (keep-alive, chunked streams, dropped connections)
rather than mocks, and without any code shared with the client under test.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any

from docify_provider.testing.faults import Fault
from docify_provider.testing.handler import DocifyRequestHandler
from docify_provider.testing.keys import DEFAULT_KEYS, fingerprint
from docify_provider.testing.records import DownloadRecord, RequestRecord, UploadRecord
from docify_provider.testing.scenarios import Scenario, builtin_scenarios
from docify_provider.testing.state import EmulatorState

logger = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # listen() backlog: the socketserver default of 5 refuses (or delays by SYN retries) a burst of
    # simultaneous connects, e.g. a triggerer starting 1,000 streams at once. The kernel caps it
    # at net.core.somaxconn.
    request_queue_size = 2048

    def __init__(self, address: tuple[str, int], emulator: DocifyEmulator) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        super().__init__(address, DocifyRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), slow on some hosts.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection error from %s", client_address, exc_info=True)


class DocifyEmulator:
    """A fake Docify server: ``with DocifyEmulator() as emu: ... emu.base_url ...``.

    Options: ``ping_interval`` (seconds between ``: ping`` comments on idle streams, None to
    disable), ``event_interval`` (delay between stream events), ``sse_event_lines`` (False:
    ``data:`` lines only), ``line_ending`` ("\\n" or "\\r\\n"), ``public_host`` (``host:port``
    used in attachment URLs; default the server's own), ``download_requires_auth``.
    The default keys (see :mod:`docify_provider.testing.keys`) are registered unless
    ``default_keys`` is False.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "/docify",
        *,
        ping_interval: float | None = 0.5,
        event_interval: float = 0.01,
        sse_event_lines: bool = True,
        line_ending: str = "\n",
        public_host: str | None = None,
        download_requires_auth: bool = False,
        default_keys: bool = True,
    ) -> None:
        if line_ending not in ("\n", "\r\n", "\r"):
            raise ValueError("line_ending must be '\\n', '\\r\\n' or '\\r'")
        if ping_interval is not None and ping_interval <= 0:
            raise ValueError("ping_interval must be positive or None")
        self.host = host
        self._requested_port = port
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.ping_interval = ping_interval
        self.event_interval = event_interval
        self.sse_event_lines = sse_event_lines
        self.line_ending = line_ending
        self.public_host = public_host
        self.download_requires_auth = download_requires_auth
        self.scenarios: dict[str, Scenario] = builtin_scenarios()
        self.state = EmulatorState()
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        if default_keys:
            for key, code, forbidden in DEFAULT_KEYS:
                self.add_key(key, code, forbidden)

    # lifecycle ----------------------------------------------------------------------------
    def start(self) -> DocifyEmulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = _Server((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="docify-emulator", daemon=True
        )
        self._thread.start()
        logger.info("Docify emulator listening on %s", self.base_url)
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

    def __enter__(self) -> DocifyEmulator:
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
        """E.g. ``http://127.0.0.1:PORT/docify`` (no trailing slash)."""
        return f"http://{self.netloc}{self.prefix}"

    @property
    def download_base(self) -> str:
        """Prefix of produced attachment URLs (on ``public_host`` when set)."""
        return f"http://{self.public_host or self.netloc}{self.prefix}/download"

    # configuration ------------------------------------------------------------------------
    def add_key(self, key: str, scenario_code: str, forbidden: bool = False) -> None:
        """Accept ``key``, bound to the scenario with ``scenario_code`` (403 when forbidden)."""
        self.state.add_key(key, scenario_code, forbidden)

    def add_scenario(self, scenario: Scenario) -> None:
        """Register (or replace) a scenario by its code."""
        self.scenarios[scenario.code] = scenario

    def inject(self, fault: Fault) -> Fault:
        """Add a fault (matched per request, in injection order); returns it."""
        return self.state.inject(fault)

    def clear_faults(self) -> None:
        self.state.clear_faults()

    @property
    def faults(self) -> list[Fault]:
        return self.state.faults()

    # observations -------------------------------------------------------------------------
    def runs_started(self, key: str | None = None) -> int:
        """Runs that passed validation and were started (= billed), in total or for ``key``."""
        return self.state.started(None if key is None else fingerprint(key))

    def runs_completed(self, key: str | None = None) -> int:
        """Runs that reached their final response (blocking body or COMPLETE event, including
        ``failed_run`` ones); ERROR events, drops, stalls and cut streams do not count."""
        return self.state.completed(None if key is None else fingerprint(key))

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
