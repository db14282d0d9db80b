"""Run a bundled emulator until Ctrl-C (SIGINT) or SIGTERM: for trying DAGs, demos and scripts.

    python -m docify_provider.testing                        # Docify, port 8765
    python -m docify_provider.testing --mode dify            # Dify Workflow Service API, port 8766
    python -m docify_provider.testing --mode dify-openapi    # Dify account API (OpenAPI), port 8767

Each mode has its own default port, so the three can run side by side. Every mode serves its
counters as JSON at GET /_emulator/counters (runs started = billed, uploads, downloads, requests;
no authentication) and prints them when it stops (Ctrl-C or SIGTERM). The dify-openapi mode
serves the device-login page that `airflow-dify login` prints, /device; with --auto-approve it
approves every device code as soon as it is issued.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from docify_provider.testing.counters import COUNTERS_PATH, summary
from docify_provider.testing.dify import DifyEmulator
from docify_provider.testing.dify.apps import DEFAULT_APP_KEYS
from docify_provider.testing.dify.emulator import RUNS_PATH, SERVER_PROFILES
from docify_provider.testing.dify_openapi import ACCOUNT_EMAIL, ACCOUNT_TOKEN, OTHER_ACCOUNT_TOKEN, DifyOpenAPIEmulator
from docify_provider.testing.emulator import DocifyEmulator
from docify_provider.testing.keys import DEFAULT_KEYS
from docify_provider.testing.server import EmulatorServer

PROG = "python -m docify_provider.testing"
#: The default port of each mode: one of each can run at the same time.
DEFAULT_PORTS = {"docify": 8765, "dify": 8766, "dify-openapi": 8767}
#: Exit status of a bad option or an address that cannot be listened on (argparse's).
USAGE = 2


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0-65535; 0 picks a free one)")
    return port


def _parser() -> argparse.ArgumentParser:
    ports = ", ".join(f"{mode} {port}" for mode, port in DEFAULT_PORTS.items())
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mode", choices=tuple(DEFAULT_PORTS), default="docify", help="which API to emulate (default: docify)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=None, help=f"port to listen on; default per mode: {ports}; 0 picks a free one"
    )
    parser.add_argument("--prefix", default="/docify", help="docify mode only (dify serves /v1)")
    parser.add_argument(
        "--ping-interval", type=float, default=None, help="seconds; 0 disables pings (default 0.5; dify 10)"
    )
    parser.add_argument(
        "--idle-close", type=float, default=300.0, help="dify: seconds without events before a stream ends"
    )
    parser.add_argument("--event-interval", type=float, default=0.01, help="seconds between stream events")
    parser.add_argument(
        "--max-active-requests",
        type=int,
        default=0,
        metavar="N",
        help="dify, dify-openapi: at most N running runs per app, beyond that 429 too_many_requests (nothing "
        "started), as Dify's APP_MAX_ACTIVE_REQUESTS; 0 (default): no cap. How long a run lasts is its "
        "inputs': the Long Job app (key app-EmuLongWorkflow000000003) runs `seconds` (e.g. 5), `label` names it",
    )
    parser.add_argument(
        "--public-host", default=None, help="host:port used in attachment URLs (and dify-openapi's /device URL)"
    )
    parser.add_argument(
        "--paths", choices=("current", "legacy"), default="current", help="dify-openapi: path generation"
    )
    parser.add_argument(
        "--server-profile",
        choices=SERVER_PROFILES,
        default="current",
        help="dify, dify-openapi: behave like the newest Dify server (current) or as its documents say (documented)",
    )
    parser.add_argument(
        "--auto-approve",
        action="store_true",
        help="dify-openapi: approve every device code (airflow-dify login) as soon as it is issued, as "
        f"{ACCOUNT_EMAIL}, for scripts and CI; without it, approve on the /device page",
    )
    parser.epilog = (
        "The emulator's own pages, at the root of the host (not under the API prefix):\n"
        f"  GET {COUNTERS_PATH}   every mode: the counters as JSON\n"
        f"  GET {RUNS_PATH}       dify, dify-openapi: every run (app, user, status, inputs, times)\n"
        "  /device                   dify-openapi: the device-login page (?user_code= prefills the code)"
    )
    return parser


def _profile_note(profile: str, lead: str) -> str:
    """What the banner says of ``--server-profile``: nothing for the default (current)."""
    return "" if profile == "current" else f"{lead}{profile} server"


def bind_error(exc: OSError, host: str, port: int) -> str:
    """One line saying why the emulator cannot listen and what to pass instead."""
    if isinstance(exc, socket.gaierror):
        return f"--host {host}: unknown host name; pass an address such as 127.0.0.1"
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use: stop the other emulator or pass --port N"
    if exc.errno == errno.EACCES:
        return f"port {port} on {host} needs privileges this user lacks: pass --port N (1024 or above)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host} is not an address of this machine: pass 127.0.0.1 (or 0.0.0.0: every interface)"
    return f"cannot listen on {host} port {port}: {exc.strerror or exc}"


def _build(args: argparse.Namespace, port: int) -> tuple[EmulatorServer, str, tuple[tuple[str, str, bool], ...]]:
    """The emulator of ``--mode``, its banner title and the keys the banner lists."""
    default_ping = 0.5 if args.mode == "docify" else 10.0
    ping = default_ping if args.ping_interval is None else args.ping_interval or None
    dify_options: dict[str, Any] = {
        "ping_interval": ping,
        "idle_close_seconds": args.idle_close,
        "event_interval": args.event_interval,
        "public_host": args.public_host,
        "server_profile": args.server_profile,
        "max_active_requests": args.max_active_requests,
    }
    if args.mode == "dify-openapi":
        openapi = DifyOpenAPIEmulator(
            host=args.host, port=port, paths=args.paths, auto_approve=args.auto_approve, **dify_options
        )
        title = f"Dify OpenAPI emulator ({args.paths} paths{_profile_note(args.server_profile, ', ')})"
        keys = ((ACCOUNT_TOKEN, "account token", False), (OTHER_ACCOUNT_TOKEN, "second account token", False))
        return openapi, title, keys
    if args.mode == "dify":
        profile = _profile_note(args.server_profile, "")
        title = f"Dify emulator{f' ({profile})' if profile else ''}"
        return DifyEmulator(host=args.host, port=port, **dify_options), title, DEFAULT_APP_KEYS
    docify = DocifyEmulator(
        host=args.host,
        port=port,
        prefix=args.prefix,
        ping_interval=ping,
        event_interval=args.event_interval,
        public_host=args.public_host,
    )
    return docify, "Docify emulator", DEFAULT_KEYS


def _banner(emulator: EmulatorServer, title: str, keys: tuple[tuple[str, str, bool], ...], default: bool) -> None:
    """The base URL first (scripts read it from the first line), then keys, pages and how to stop."""
    print(f"{title}: {emulator.base_url}", flush=True)
    for key, code, forbidden in keys:
        print(f"  key {key} -> {code}{' (forbidden)' if forbidden else ''}", flush=True)
    if isinstance(emulator, DifyOpenAPIEmulator):
        how = (
            f"not needed: --auto-approve approves every code at once, as {ACCOUNT_EMAIL}"
            if emulator.auto_approve
            else "approve the codes of `airflow-dify login` there"
        )
        print(f"  device login page: {emulator.device_url} ({how})", flush=True)
    print(f"  counters: http://{emulator.netloc}{COUNTERS_PATH}", flush=True)
    if default:
        others = ", ".join(f"{mode} {port}" for mode, port in DEFAULT_PORTS.items() if mode != emulator.mode)
        print(f"  port {emulator.port}: the default of --mode {emulator.mode} ({others})", flush=True)
    print("Stop with Ctrl-C: the counters are printed on the way out.", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the emulator, print its base URL and keys, serve until SIGINT/SIGTERM, print the counters."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.auto_approve and args.mode != "dify-openapi":
        parser.error("--auto-approve goes with --mode dify-openapi (the device login of Dify's account API)")
    port = DEFAULT_PORTS[args.mode] if args.port is None else args.port
    emulator, title, keys = _build(args, port)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            emulator.start()
        except OSError as exc:
            print(f"{PROG}: error: {bind_error(exc, args.host, port)}", file=sys.stderr, flush=True)
            return USAGE
        try:
            _banner(emulator, title, keys, default=args.port is None)
            while not stop.wait(0.5):
                pass
        finally:
            emulator.stop()
        with contextlib.suppress(OSError):  # stdout gone (a closed pipe): nothing left to tell
            print(summary(title, emulator.counters()), flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
