"""``DocifyEmulator``: a real HTTP/1.1 Docify API server on localhost for tests and demos.

Clients are tested against real sockets (keep-alive, chunked streams, dropped connections)
rather than mocks, and without any code shared with the client under test.
"""

from __future__ import annotations

from typing import Any

from docify_provider.testing.handler import DocifyRequestHandler
from docify_provider.testing.keys import DEFAULT_KEYS, fingerprint
from docify_provider.testing.scenarios import Scenario, builtin_scenarios
from docify_provider.testing.server import EmulatorServer
from docify_provider.testing.state import EmulatorState


class DocifyEmulator(EmulatorServer):
    """A fake Docify server: ``with DocifyEmulator() as emu: ... emu.base_url ...``.

    Options: ``ping_interval`` (seconds between ``: ping`` comments on idle streams, None to
    disable), ``event_interval`` (delay between stream events), ``sse_event_lines`` (False:
    ``data:`` lines only), ``line_ending`` ("\\n" or "\\r\\n"), ``public_host`` (``host:port``
    used in attachment URLs; default the server's own), ``download_requires_auth``.
    The default keys (see :mod:`docify_provider.testing.keys`) are registered unless
    ``default_keys`` is False.
    """

    handler_class = DocifyRequestHandler
    name = "docify-emulator"
    mode = "docify"

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
        super().__init__(host, port, EmulatorState())
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.ping_interval = ping_interval
        self.event_interval = event_interval
        self.sse_event_lines = sse_event_lines
        self.line_ending = line_ending
        self.public_host = public_host
        self.download_requires_auth = download_requires_auth
        self.scenarios: dict[str, Scenario] = builtin_scenarios()
        if default_keys:
            for key, code, forbidden in DEFAULT_KEYS:
                self.add_key(key, code, forbidden)

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

    # observations -------------------------------------------------------------------------
    def runs_started(self, key: str | None = None) -> int:
        """Runs that passed validation and were started (= billed), in total or for ``key``."""
        return self.state.started(None if key is None else fingerprint(key))

    def runs_completed(self, key: str | None = None) -> int:
        """Runs that reached their final response (blocking body or COMPLETE event, including
        ``failed_run`` ones); ERROR events, drops, stalls and cut streams do not count."""
        return self.state.completed(None if key is None else fingerprint(key))

    def counters(self) -> dict[str, Any]:
        """The shared counters plus ``runs_started_by_scenario``: runs started per scenario code
        (the scenario each key is bound to, as the command line's banner lists them)."""
        by_scenario: dict[str, int] = {}
        for key_fp, n in sorted(self.state.per_key("started").items()):
            binding = self.state.binding(key_fp)
            code = binding.scenario_code if binding is not None else "unknown key"
            by_scenario[code] = by_scenario.get(code, 0) + n
        return {**super().counters(), "runs_started_by_scenario": by_scenario}
