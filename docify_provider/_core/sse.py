"""Bounded event text for ``httpx-sse``: a cap on one event's size, an idle clock, a deadline.

Framing (``event:``/``data:`` lines, LF or CRLF, multi-line data, comments, events split across
network chunks) is left to ``httpx-sse``, a spec-compliant decoder. Around it this module adds
what a long unattended stream needs, for every backend: a cap on the size of one event (memory),
an idle clock that pings do not reset (a stream that only pings is stuck) and a stream deadline.
Turning events into a verdict is the backend's (``client.sse.StreamTracker`` for Docify).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from docify_provider._core.errors import ProtocolError, ProviderError, RunTimeoutError, error_class

if TYPE_CHECKING:
    import httpx

_BOUNDARIES = ("\n\n", "\r\r", "\r\n\r\n")
#: ``json.loads`` of a ``str`` without options is this call; binding it skips two calls per event.
json_decode = json.JSONDecoder().decode


def _end_of_last(window: str, boundary: str) -> int:
    """Index just past the last ``boundary`` in ``window``, or -1."""
    at = window.rfind(boundary)
    return at + len(boundary) if at >= 0 else -1


class BoundedEventText:
    """Wraps a streaming ``httpx.Response`` for ``httpx_sse.EventSource``.

    Passes text through while checking, chunk by chunk, that the event being received has not grown
    past ``max_event_chars``, that an event arrived within ``idle_timeout`` seconds and, when
    ``max_stream_seconds`` is set, that the stream has not been open longer than that. All raise
    before the data is buffered further, so a hostile stream cannot exhaust memory or hold a
    worker forever with pings or with events that never end.
    """

    def __init__(
        self,
        response: httpx.Response,
        *,
        max_event_chars: int,
        idle_timeout: float,
        endpoint: str,
        max_stream_seconds: float | None = None,
        errors: type[ProviderError] = ProviderError,
    ):
        self.response = response
        self.headers = response.headers
        self.max_event_chars = max_event_chars
        self.idle_timeout = idle_timeout
        self.max_stream_seconds = max_stream_seconds
        self.endpoint = endpoint
        self.errors = errors
        self.pending = 0
        self.tail = ""
        self.started = self.last_event = time.monotonic()
        # One comparison per chunk; infinity when the stream is unbounded (the default).
        self.deadline = float("inf") if max_stream_seconds is None else self.started + max_stream_seconds

    def event_seen(self) -> None:
        self.last_event = time.monotonic()

    def _cut(self, text: str) -> int:
        """Index in ``text`` just past the last event boundary, or -1 when it holds none.

        Only ``text`` is searched (from its end, so usually a few characters), plus, when it holds no
        boundary, the few characters where it meets the previous chunk (``tail``): a boundary split
        across two chunks. Nothing is copied or searched twice.
        """
        tail = self.tail
        if "\r" not in text and not tail.endswith("\r"):  # LF-only framing (the common case): one search
            at = text.rfind("\n\n")
            if at >= 0:
                return at + 2
            return 1 if text[:1] == "\n" and tail.endswith("\n") else -1
        cut = max(_end_of_last(text, b) for b in _BOUNDARIES)
        if cut >= 0:
            return cut
        seam = tail + text[:3]
        cut = max(_end_of_last(seam, b) for b in _BOUNDARIES) - len(tail)
        return cut if cut > 0 else -1

    def _check(self, text: str) -> None:
        cut = self._cut(text)
        if cut >= 0:
            self.pending = len(text) - cut
        else:
            self.pending += len(text)
        self.tail = text[-3:] if len(text) >= 3 else (self.tail + text)[-3:]
        if self.pending > self.max_event_chars:
            raise error_class(self.errors, ProtocolError)(
                f"A stream event exceeded {self.max_event_chars} characters; refusing to buffer more "
                "(raise max_event_chars in the connection extras if results really are this large)",
                endpoint=self.endpoint,
            )
        now = time.monotonic()
        idle = now - self.last_event
        if idle > self.idle_timeout:
            raise error_class(self.errors, RunTimeoutError)(
                f"No stream event for {idle:.0f}s (idle_timeout {self.idle_timeout:g}s); only keep-alives arrived. "
                "The run may have started and been billed; it is not re-sent automatically.",
                endpoint=self.endpoint,
            )
        if now > self.deadline:
            raise error_class(self.errors, RunTimeoutError)(
                f"The stream exceeded max_stream_seconds ({self.max_stream_seconds:g}s): still open after "
                f"{now - self.started:.1f}s without its final event, so it was closed. The run may have "
                "started and been billed; it is not re-sent automatically (raise max_stream_seconds in the "
                "connection extras if runs really take this long).",
                endpoint=self.endpoint,
            )

    def iter_text(self) -> Iterator[str]:
        for text in self.response.iter_text():
            self._check(text)
            yield text

    async def aiter_text(self) -> AsyncIterator[str]:
        async for text in self.response.aiter_text():
            self._check(text)
            yield text
