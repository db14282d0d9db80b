"""Command line: run the emulator until SIGINT/SIGTERM, for manual tries and demo DAGs.

python -m docify_provider.testing --port 8765
python -m docify_provider.testing --mode dify --port 8766 [--server-profile documented]
python -m docify_provider.testing --mode dify-openapi --port 8767 [--paths legacy] [--server-profile documented]
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from docify_provider.testing.dify import DifyEmulator
from docify_provider.testing.dify.apps import DEFAULT_APP_KEYS
from docify_provider.testing.dify.emulator import SERVER_PROFILES
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, OTHER_ACCOUNT_TOKEN, DifyOpenAPIEmulator
from docify_provider.testing.emulator import DocifyEmulator
from docify_provider.testing.keys import DEFAULT_KEYS
from docify_provider.testing.server import EmulatorServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m docify_provider.testing", description=__doc__)
    parser.add_argument(
        "--mode", choices=("docify", "dify", "dify-openapi"), default="docify", help="which API to emulate"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--prefix", default="/docify", help="docify mode only (dify serves /v1)")
    parser.add_argument(
        "--ping-interval", type=float, default=None, help="seconds; 0 disables pings (default 0.5; dify 10)"
    )
    parser.add_argument(
        "--idle-close", type=float, default=300.0, help="dify: seconds without events before a stream ends"
    )
    parser.add_argument("--event-interval", type=float, default=0.01, help="seconds between stream events")
    parser.add_argument("--public-host", default=None, help="host:port used in attachment URLs")
    parser.add_argument(
        "--paths", choices=("current", "legacy"), default="current", help="dify-openapi: path generation"
    )
    parser.add_argument(
        "--server-profile",
        choices=SERVER_PROFILES,
        default="current",
        help="dify, dify-openapi: behave like the newest Dify server (current) or as its documents say (documented)",
    )
    return parser


def _profile_note(profile: str, lead: str) -> str:
    """What the banner says of ``--server-profile``: nothing for the default (current)."""
    return "" if profile == "current" else f"{lead}{profile} server"


def main(argv: Sequence[str] | None = None) -> int:
    """Start the emulator, print its base URL and keys, serve until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    default_ping = 0.5 if args.mode == "docify" else 10.0
    ping = default_ping if args.ping_interval is None else args.ping_interval or None
    emulator: EmulatorServer
    keys: tuple[tuple[str, str, bool], ...]
    if args.mode == "dify-openapi":
        emulator = DifyOpenAPIEmulator(
            host=args.host,
            port=args.port,
            paths=args.paths,
            ping_interval=ping,
            idle_close_seconds=args.idle_close,
            event_interval=args.event_interval,
            public_host=args.public_host,
            server_profile=args.server_profile,
        )
        title = f"Dify OpenAPI emulator ({args.paths} paths{_profile_note(args.server_profile, ', ')})"
        keys = ((ACCOUNT_TOKEN, "account token", False), (OTHER_ACCOUNT_TOKEN, "second account token", False))
    elif args.mode == "dify":
        emulator = DifyEmulator(
            host=args.host,
            port=args.port,
            ping_interval=ping,
            idle_close_seconds=args.idle_close,
            event_interval=args.event_interval,
            public_host=args.public_host,
            server_profile=args.server_profile,
        )
        profile = _profile_note(args.server_profile, "")
        title, keys = f"Dify emulator{f' ({profile})' if profile else ''}", DEFAULT_APP_KEYS
    else:
        emulator = DocifyEmulator(
            host=args.host,
            port=args.port,
            prefix=args.prefix,
            ping_interval=ping,
            event_interval=args.event_interval,
            public_host=args.public_host,
        )
        title, keys = "Docify emulator", DEFAULT_KEYS
    try:
        with emulator:
            print(f"{title}: {emulator.base_url}", flush=True)
            for key, code, forbidden in keys:
                print(f"  key {key} -> {code}{' (forbidden)' if forbidden else ''}", flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
