"""Server-Sent Events output for ``POST /v1/scenario/run/streaming``.

Clients must cope with what real proxies and servers put on the wire: ``event:``/``data:``
frames, ``: ping`` comments while idle, one HTTP chunk per event (flushed immediately),
events split across chunks, and streams that break. :class:`EventStream` writes frames;
:func:`play` sends a run's event sequence, shaped by an optional stream fault.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from docify_provider.testing.faults import Fault
from docify_provider.testing.http_io import LAST_CHUNK, chunk
from docify_provider.testing.runs import Run, now_ms

PIECE_SIZE = 64 * 1024
MALFORMED_DATA = '{"type": "TEXT", "content": '
_HUGE_MARK = "__docify_emulator_huge_content__"


@dataclass
class HugeText:
    """A TEXT event whose content is ``size`` "A"s, written piece by piece and never built whole.

    The emulator usually shares a process with the client under test; a 1 GB event built as one
    string would dominate that process's memory and hide what the client itself holds.
    """

    body: dict[str, Any]
    size: int


def event(run: Run, type_: str, **fields: Any) -> dict[str, Any]:
    """One API event object: type, sessionId, content, response, error, chunkId, timestamp."""
    body: dict[str, Any] = {"type": type_, "sessionId": run.session_id}
    body.update({"content": None, "response": None, "error": None})
    body.update(fields)
    body.update({"chunkId": str(uuid.uuid4()), "timestamp": now_ms()})
    return body


class EventStream:
    """Writes SSE frames as HTTP chunks and pings (``: ping`` comments by default) while waiting.

    ``ping_frame`` replaces the ping's text (Dify: ``event: ping`` then a blank line).
    """

    def __init__(
        self,
        write: Callable[[bytes], object],
        *,
        ping_interval: float | None,
        event_lines: bool,
        line_ending: str,
        stopping: threading.Event,
        ping_frame: str = ": ping",
    ) -> None:
        self._write = write
        self._ping_interval = ping_interval
        self._event_lines = event_lines
        self._le = line_ending
        self._stopping = stopping
        self._ping = f"{ping_frame}{line_ending}{line_ending}".encode()
        self._last_write = time.monotonic()
        self.events_sent = 0

    @property
    def last_write(self) -> float:
        """``time.monotonic()`` of the last bytes written (event or ping)."""
        return self._last_write

    def ping(self) -> None:
        """Send one ping frame now."""
        self._send(self._ping)

    def _send(self, payload: bytes) -> None:
        for start in range(0, len(payload), PIECE_SIZE):
            self._write(chunk(payload[start : start + PIECE_SIZE]))
        self._last_write = time.monotonic()

    def frame(self, sse_type: str, data: str) -> None:
        """Send one frame: ``event: <sse_type>`` (optional) and ``data: <data>``."""
        lines = [f"event: {sse_type}"] if self._event_lines else []
        lines.append(f"data: {data}")
        self._send((self._le.join(lines) + self._le * 2).encode("utf-8"))
        self.events_sent += 1

    def send_event(self, body: dict[str, Any]) -> None:
        self.frame(str(body["type"]).lower(), json.dumps(body, ensure_ascii=False))

    def send_huge(self, huge: HugeText, *, dumps: Callable[[Any], str] | None = None, field: str = "content") -> None:
        """Send ``huge`` as one frame, the same bytes ``send_event`` would write, in pieces.

        ``dumps`` serialises the body (default: ``json.dumps(..., ensure_ascii=False)``);
        ``field`` names the key of the big text inside ``huge.body`` (nested: "data.text").
        """
        marked: dict[str, Any] = json.loads(json.dumps(huge.body))
        *parents, leaf = field.split(".")
        target = marked
        for name in parents:
            target = target[name]
        target[leaf] = _HUGE_MARK
        text = (dumps or (lambda body: json.dumps(body, ensure_ascii=False)))(marked)
        head, tail = text.split(_HUGE_MARK, 1)
        prefix = f"event: {str(huge.body.get('type', '')).lower()}{self._le}" if self._event_lines else ""
        self._write(chunk(f"{prefix}data: {head}".encode()))
        piece = b"A" * PIECE_SIZE
        remaining = huge.size
        while remaining > 0:
            if self._stopping.is_set():
                raise ConnectionAbortedError("emulator stopping")
            self._write(chunk(piece[: min(remaining, PIECE_SIZE)]))
            remaining -= PIECE_SIZE
        self._send((tail + self._le * 2).encode("utf-8"))
        self.events_sent += 1

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, sending a ping whenever the stream was idle for ping_interval."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            step = remaining
            if self._ping_interval:
                until_ping = self._last_write + self._ping_interval - time.monotonic()
                if until_ping <= 0:
                    self.ping()
                    continue
                step = min(step, until_ping)
            if self._stopping.wait(step):
                raise ConnectionAbortedError("emulator stopping")

    def silence(self, seconds: float) -> None:
        """Send nothing at all for ``seconds``."""
        if self._stopping.wait(seconds):
            raise ConnectionAbortedError("emulator stopping")

    def end(self) -> None:
        """Finish the chunked body cleanly."""
        self._write(LAST_CHUNK)


def _plan(run: Run, fault: Fault | None) -> list[dict[str, Any] | str | HugeText]:
    """Events before the terminal one; a ``str`` item is raw (malformed) data."""
    kind = fault.kind if fault else None
    plan: list[dict[str, Any] | str | HugeText] = [
        event(run, "START"),
        event(run, "PREPARE_START", content="Preparing to execute task..."),
        event(run, "PREPARE_END", content="Preparation complete"),
    ]
    if kind in ("error_event", "endless"):
        return plan
    texts: list[dict[str, Any] | str | HugeText] = [event(run, "TEXT", content=t) for t in run.scenario.text_chunks]
    if fault is not None and kind == "huge_event":
        texts.insert(1, HugeText(event(run, "TEXT"), int(fault.size or 0)))
    if kind == "malformed_event":
        texts.insert(1, MALFORMED_DATA)
    if kind == "unknown_event":
        texts.append(event(run, "HEARTBEAT_V2", content="unknown"))
    return plan + texts


def _endless(stream: EventStream, run: Run, interval: float, seconds: float) -> None:
    """TEXT events every ``interval`` seconds, never a COMPLETE; end cleanly after ``seconds``."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        stream.wait(min(interval, max(0.0, deadline - time.monotonic())))
        count += 1
        stream.send_event(event(run, "TEXT", content=f"Still working... ({count})"))
    stream.end()


def play(
    stream: EventStream,
    run: Run,
    fault: Fault | None,
    interval: float,
    final: Callable[[], dict[str, Any]],
) -> str:
    """Send the run's events; return ``"complete"``, ``"clean"`` (ended without COMPLETE)
    or ``"abort"`` (the caller must close the socket without the last chunk)."""
    kind = fault.kind if fault else None
    if fault is not None and kind == "slow_events":
        interval = float(fault.interval or 0)
    plan = _plan(run, fault)
    cut = len(plan)
    if fault is not None and kind in ("drop_mid_stream", "end_without_complete", "stall"):
        cut = min(int(fault.after_events or 0), len(plan))
    for index, item in enumerate(plan[:cut]):
        if index:
            previous = plan[index - 1]
            after_prepare = isinstance(previous, dict) and previous["type"] == "PREPARE_END"
            stream.wait(interval + (run.scenario.latency if after_prepare else 0.0))
        if isinstance(item, str):
            stream.frame("text", item)
        elif isinstance(item, HugeText):
            item.body["timestamp"] = now_ms()
            stream.send_huge(item)
        else:
            item["timestamp"] = now_ms()
            stream.send_event(item)
    if kind == "drop_mid_stream":
        return "abort"
    if fault is not None and kind == "stall":
        stream.silence(float(fault.seconds or 0))
        return "abort"
    if kind == "end_without_complete":
        stream.end()
        return "clean"
    if fault is not None and kind == "endless":
        _endless(stream, run, float(fault.interval or 0), float(fault.seconds or 0))
        return "clean"
    stream.wait(interval)
    if fault is not None and kind == "error_event":
        stream.send_event(event(run, "ERROR", error=fault.message or "Emulated scenario failure"))
        stream.end()
        return "clean"
    stream.send_event(event(run, "COMPLETE", response=final()))
    stream.end()
    return "complete"
