"""The emulator's counters for people and scripts: ``GET /_emulator/counters`` and the exit summary.

In a test the counters are read in process (``emu.runs_started()``, ``emu.uploads``, ...); an
emulator started from the command line runs in another process, so the same numbers are served
as JSON at the root of every mode (whatever the API prefix; no authentication; not recorded as
a request and never hit by a fault, since they are no part of the emulated API) and printed as
one short summary when the command stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docify_provider.testing.base_handler import EmulatorRequestHandler

#: Where every mode serves its counters (at the root of the host, not under the API prefix).
COUNTERS_PATH = "/_emulator/counters"


def counters_page(handler: EmulatorRequestHandler) -> None:
    """``GET /_emulator/counters``: the emulator's :meth:`~EmulatorServer.counters` as JSON."""
    if handler.command not in ("GET", "HEAD"):
        handler._extra_headers["Allow"] = "GET, HEAD"
        body = {"error": f"{COUNTERS_PATH} answers GET only", "status": 405}
        handler._send_json(405, body)
        return
    handler._send_json(200, handler.emulator.counters(), {"Cache-Control": "no-store"})


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _by(label: str, counts: dict[str, int]) -> str:
    return f"  {label}: " + ", ".join(f"{name} {n}" for name, n in counts.items())


def summary(title: str, counters: dict[str, Any]) -> str:
    """What the command prints when it stops: the counters of :func:`counters_page`, in words.

    One line of totals, then (only where there is something to say) the runs per scenario or
    app and the device logins.
    """
    parts = [
        _count(counters["runs_started"], "run") + " started (billed)",
        f"{counters['runs_completed']} completed",
        _count(counters["uploads"], "upload"),
        _count(counters["downloads"], "download"),
        _count(counters["requests"], "API request"),
    ]
    lines = [f"{title} stopped: " + ", ".join(parts) + "."]
    for key, label in (("runs_started_by_scenario", "runs by scenario"), ("runs_started_by_app", "runs by app")):
        if counters.get(key):
            lines.append(_by(label, counters[key]))
    if counters.get("runs_by_status"):
        lines.append(_by("runs by status", counters["runs_by_status"]))
    device = counters.get("device_logins")
    if device and device["codes_issued"]:
        lines.append(
            f"  device logins: {_count(device['codes_issued'], 'code')} issued, {device['approved']} approved, "
            f"{device['denied']} denied, {_count(device['tokens_handed_out'], 'token')} handed out"
        )
    return "\n".join(lines)
