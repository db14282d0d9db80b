"""Shared helpers for the benchmark scripts: an emulator in its own process, memory readings."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """Run ``python -m docify_provider.testing`` in a child process (so its memory is not ours)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "docify_provider.testing", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/docify"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(base_url + "/v1/scenario/info", timeout=1)
                break
            time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(10)


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (VmRSS: resident now, VmHWM: peak resident)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> None:
    """Make VmHWM start again from the current resident size (Linux >= 4.0)."""
    with open(f"/proc/{os.getpid()}/clear_refs", "w") as fh:
        fh.write("5")
