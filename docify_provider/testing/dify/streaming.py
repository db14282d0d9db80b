"""Dify's SSE framing (A3) on top of :class:`~docify_provider.testing.streaming.EventStream`.

Every event is one ``data: <compact JSON, raw UTF-8>`` frame with the event name inside the
JSON; a ping is exactly ``event: ping`` and a blank line, sent first and then every
``ping_interval`` seconds without events. The body just ends (no terminal event) after
``idle_close_seconds`` without a real event; pings do not reset that clock. A stream is a
subscriber of the run's channel: it sees live events only, and closing it leaves the run be.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from docify_provider.testing.faults import Fault
from docify_provider.testing.streaming import EventStream, HugeText

TERMINAL = frozenset({"workflow_finished", "workflow_paused"})
MALFORMED_DATA = '{"event":"text_chunk","task_id":'
#: An event name no workflow client knows (Dify adds events over time; clients must skip them).
UNKNOWN_EVENT = "agent_log"
_CUTS = ("drop_mid_stream", "end_without_complete", "stall")


def compact(body: Any) -> str:
    """orjson-style JSON: no spaces, non-ASCII characters as raw UTF-8."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def dify_stream(
    write: Callable[[bytes], object], ping_interval: float | None, stopping: threading.Event
) -> EventStream:
    """An :class:`EventStream` writing Dify frames (``data:`` lines only, ``event: ping``)."""
    return EventStream(
        write,
        ping_interval=ping_interval,
        event_lines=False,
        line_ending="\n",
        stopping=stopping,
        ping_frame="event: ping",
    )


def _extra_frame(stream: EventStream, fault: Fault, first: dict[str, Any]) -> None:
    """The frame a ``malformed_event`` / ``unknown_event`` / ``huge_event`` fault adds."""
    envelope = {"task_id": first.get("task_id"), "workflow_run_id": first.get("workflow_run_id")}
    if fault.kind == "malformed_event":
        stream.frame("", MALFORMED_DATA)
    elif fault.kind == "unknown_event":
        stream.frame("", compact({"event": UNKNOWN_EVENT, **envelope, "data": {"label": "unknown", "status": "start"}}))
    elif fault.kind == "huge_event":
        body = {"event": "text_chunk", **envelope, "data": {"text": "", "from_variable_selector": ["llm", "text"]}}
        stream.send_huge(HugeText(body, int(fault.size or 0)), dumps=compact, field="data.text")


def pump(
    stream: EventStream,
    channel: queue.SimpleQueue[dict[str, Any]],
    *,
    ping_interval: float | None,
    idle_close: float,
    terminal: frozenset[str],
    fault: Fault | None,
    stopping: threading.Event,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> str:
    """Relay the channel's events; return ``"terminal"``, ``"idle"``, ``"clean"`` (a fault
    ended the body early) or ``"abort"`` (the caller must cut the socket).

    ``transform`` rewrites each event before it is written (the OpenAPI adds ``hints``)."""
    kind = fault.kind if fault is not None else None
    cut = int(fault.after_events or 0) if fault is not None and kind in _CUTS else None
    delay = float(fault.interval or 0) if fault is not None and kind == "slow_events" else 0.0
    stream.ping()
    last_message = time.monotonic()
    while True:
        if cut is not None and stream.events_sent >= cut:
            if fault is not None and kind == "stall":
                stream.silence(float(fault.seconds or 0))
            if kind == "end_without_complete":
                stream.end()
                return "clean"
            return "abort"
        now = time.monotonic()
        deadline = last_message + idle_close
        if ping_interval:
            deadline = min(deadline, stream.last_write + ping_interval)
        try:
            item = channel.get(timeout=min(max(deadline - now, 0.0), 0.2))
        except queue.Empty:
            if stopping.is_set():
                raise ConnectionAbortedError("emulator stopping") from None
            now = time.monotonic()
            if now - last_message >= idle_close:
                stream.end()
                return "idle"
            if ping_interval and now - stream.last_write >= ping_interval:
                stream.ping()
            continue
        last_message = time.monotonic()
        if delay:
            stream.wait(delay)
        stream.frame("", compact(item if transform is None else transform(item)))
        if fault is not None and stream.events_sent == 1 and kind in ("malformed_event", "unknown_event", "huge_event"):
            _extra_frame(stream, fault, item)
        if item.get("event") in terminal:
            stream.end()
            return "terminal"
