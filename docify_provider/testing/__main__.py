"""Command line: run the emulator until SIGINT/SIGTERM, for manual tries and demo DAGs.

python -m docify_provider.testing --port 8765
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from docify_provider.testing.emulator import DocifyEmulator
from docify_provider.testing.keys import DEFAULT_KEYS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m docify_provider.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--prefix", default="/docify")
    parser.add_argument("--ping-interval", type=float, default=0.5, help="seconds; 0 disables pings")
    parser.add_argument("--event-interval", type=float, default=0.01, help="seconds between stream events")
    parser.add_argument("--public-host", default=None, help="host:port used in attachment URLs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start the emulator, print its base URL and keys, serve until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    emulator = DocifyEmulator(
        host=args.host,
        port=args.port,
        prefix=args.prefix,
        ping_interval=args.ping_interval or None,
        event_interval=args.event_interval,
        public_host=args.public_host,
    )
    try:
        with emulator:
            print(f"Docify emulator: {emulator.base_url}", flush=True)
            for key, code, forbidden in DEFAULT_KEYS:
                print(f"  key {key} -> {code}{' (forbidden)' if forbidden else ''}", flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
