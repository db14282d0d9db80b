"""What many test modules need, written once: the three emulators at test-sized intervals, waiting
for the emulator's records to settle, a bearer header, a digest, and the sample inputs.

Fixtures built on these are in ``tests/conftest.py`` (``emu``, ``requests_to``, ...); the Airflow
side (``dag.test()`` runs, connections) is in ``tests/airflow_helpers.py``, and real deployments in
``tests/deployment.py``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from docify_provider.testing.dify import DifyEmulator
from docify_provider.testing.dify_openapi import DifyOpenAPIEmulator
from docify_provider.testing.emulator import DocifyEmulator

#: The browser the UI tests drive (Debian's Chromium, installed by scripts/services.sh), or None.
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
#: Headless, no sandbox (root in a container), nothing fetched from the network by the browser itself.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The marks of a browser test: skipped, with the reason, where Chromium or Playwright is missing.
NEEDS_BROWSER = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium at /usr/bin/chromium or on PATH (scripts/services.sh installs it)"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="the playwright package is not installed"
    ),
]

#: A small PDF the Docify file inputs accept.
PDF = b"%PDF-1.4\n" + b"Docify test document\n" * 200
#: Inputs of the Docify summary scenario (``SUMMARY_KEY``), its JSON result and its stream.
SUMMARY_INPUTS = {"text": "Docify reads invoices. It also summarises long reports.", "language": "en"}
SUMMARY_RESULT = {"summary": "Docify reads invoices.", "word_count": 8, "language": "en", "title": None}
SUMMARY_EVENTS = ["START", "PREPARE_START", "PREPARE_END", "TEXT", "TEXT", "COMPLETE"]
#: Inputs of the Dify emulators' text workflow (``TEXT_APP_KEY`` / ``TEXT_APP_ID``).
TEXT_INPUTS = {"topic": "tea", "tone": "formal"}


def auth(token: str) -> dict[str, str]:
    """The ``Authorization`` header every backend takes: ``Bearer <token>``."""
    return {"Authorization": f"Bearer {token}"}


def sha(data: bytes) -> str:
    """The SHA-256 hex digest of ``data`` (to compare a downloaded file with what was served)."""
    return hashlib.sha256(data).hexdigest()


def settled(read: Callable[[], list[Any]], at_least: int, timeout: float = 5) -> list[Any]:
    """``read()`` once it has ``at_least`` items, or as it is after ``timeout`` seconds.

    The emulators record a request (or download) after they have written the response, so a client
    can be done before the record exists: wait briefly until the records are there.
    """
    deadline = time.monotonic() + timeout
    found = read()
    while len(found) < at_least and time.monotonic() < deadline:
        time.sleep(0.01)
        found = read()
    return found


@dataclass(frozen=True)
class Backend:
    """One backend as the tests see it: its emulator class and the intervals tests run it with."""

    name: str
    emulator: type[Any]
    #: Fast pings and events: a run takes milliseconds, an idle stream is noticed within a second.
    options: dict[str, Any] = field(default_factory=dict)

    def start(self, **options: Any) -> Any:
        """A started emulator (``options`` over the test-sized defaults); stop it, or use ``with``."""
        return self.emulator(**{**self.options, **options}).start()


BACKENDS: dict[str, Backend] = {
    "docify": Backend("docify", DocifyEmulator, {"ping_interval": 0.1, "event_interval": 0.002}),
    "dify": Backend("dify", DifyEmulator, {"ping_interval": 0.2, "idle_close_seconds": 5.0, "event_interval": 0.005}),
    "dify_openapi": Backend(
        "dify_openapi",
        DifyOpenAPIEmulator,
        {"ping_interval": 0.2, "idle_close_seconds": 5.0, "event_interval": 0.005, "device_poll_interval": 0.2},
    ),
}


__all__ = [
    "BACKENDS",
    "PDF",
    "SUMMARY_EVENTS",
    "SUMMARY_INPUTS",
    "SUMMARY_RESULT",
    "TEXT_INPUTS",
    "Backend",
    "auth",
    "settled",
    "sha",
]
