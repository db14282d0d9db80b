"""Server-Sent Events -> ``StreamEvent``s, bounded in size and idleness, for sync and async.

Framing (``event:``/``data:`` lines, LF or CRLF, multi-line data, comments, events split across
network chunks) is left to ``httpx-sse``, a spec-compliant decoder. Around it this module adds
what a long unattended stream needs: a cap on the size of one event (memory), an idle clock that
pings do not reset (a stream that only pings is stuck), and the bookkeeping that turns the event
sequence into a verdict: COMPLETE with success, or a typed error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from docify_provider.client.errors import (
    DocifyProtocolError,
    DocifyRunFailedError,
    DocifyRunTimeoutError,
    DocifyStreamIncompleteError,
)
from docify_provider.client.models import EventType, RunResult, StreamEvent
from docify_provider.client.protocol import DocifyProtocol

if TYPE_CHECKING:
    import httpx
    from httpx_sse import ServerSentEvent

log = logging.getLogger(__name__)

_BOUNDARIES = ("\n\n", "\r\r", "\r\n\r\n")
_ERROR = EventType.ERROR.value
_COMPLETE = EventType.COMPLETE.value
_KNOWN_TYPES = frozenset(EventType.__members__)
_NON_TERMINAL_TYPES = _KNOWN_TYPES - {_ERROR, _COMPLETE}
#: ``json.loads`` of a ``str`` without options is this call; binding it skips two calls per event.
_json_decode = json.JSONDecoder().decode


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
    worker forever with pings or with events that never end in COMPLETE.
    """

    def __init__(
        self,
        response: httpx.Response,
        *,
        max_event_chars: int,
        idle_timeout: float,
        endpoint: str,
        max_stream_seconds: float | None = None,
    ):
        self.response = response
        self.headers = response.headers
        self.max_event_chars = max_event_chars
        self.idle_timeout = idle_timeout
        self.max_stream_seconds = max_stream_seconds
        self.endpoint = endpoint
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
            raise DocifyProtocolError(
                f"A stream event exceeded {self.max_event_chars} characters; refusing to buffer more "
                "(raise max_event_chars in the connection extras if results really are this large)",
                endpoint=self.endpoint,
            )
        now = time.monotonic()
        idle = now - self.last_event
        if idle > self.idle_timeout:
            raise DocifyRunTimeoutError(
                f"No stream event for {idle:.0f}s (idle_timeout {self.idle_timeout:g}s); only keep-alives arrived. "
                "The run may have started and been billed; it is not re-sent automatically.",
                endpoint=self.endpoint,
            )
        if now > self.deadline:
            raise DocifyRunTimeoutError(
                f"The stream exceeded max_stream_seconds ({self.max_stream_seconds:g}s): still open after "
                f"{now - self.started:.1f}s without COMPLETE or ERROR, so it was closed. The run may have "
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


class StreamTracker:
    """Reads decoded SSE messages into ``StreamEvent``s and decides how the run ended.

    Yield-worthy events come back from ``feed``; failures raise: an ERROR event or a COMPLETE with
    ``isSuccess`` false raise ``DocifyRunFailedError`` (carrying the server's result), and a stream
    that ends without either raises ``DocifyStreamIncompleteError`` from ``finish``.
    """

    def __init__(self, endpoint: str, protocol: type[DocifyProtocol] = DocifyProtocol):
        self.endpoint = endpoint
        self.protocol = protocol
        self.session_id: str | None = None
        self.run_id: str | None = None
        self.events_seen: list[str] = []
        self.result: RunResult | None = None
        self.malformed = 0
        self._parse = protocol.parse_event

    def feed(self, sse: ServerSentEvent) -> StreamEvent | None:
        data = sse.data
        if not data or data.isspace():
            return None  # an event with no data (e.g. an "event: ping" with nothing else)
        name = sse.event
        try:
            event = self._parse(_json_decode(data), sse_event=None if name == "message" else name)
        except (ValueError, DocifyProtocolError) as exc:
            # One bad event must not lose a run that is still going: note it and read on. If it was
            # the COMPLETE, ``finish`` reports the run as incomplete with the session id.
            self.malformed += 1
            log.warning("Skipping malformed Docify stream event (%s): %.200r", exc, data)
            return None
        if event.session_id:
            self.session_id = event.session_id
        kind = event.type
        self.events_seen.append(kind)
        if kind in _NON_TERMINAL_TYPES:
            return event  # START, PREPARE_*, TEXT: nothing to decide
        if kind == _ERROR:
            raise DocifyRunFailedError(
                f"Docify reported an error during the run: {event.error or event.content or 'no message'}"
                f" (session {self.session_id})",
                endpoint=self.endpoint,
                session_id=self.session_id,
                error=event.error or event.content,
            )
        if kind == _COMPLETE:
            if event.response is None:
                raise DocifyProtocolError(
                    f"COMPLETE event without a response (session {self.session_id})", endpoint=self.endpoint
                )
            self.result = event.response
            self.run_id = event.response.run_id
            raise_if_failed(event.response, self.endpoint, session_id=self.session_id)
        elif kind not in _KNOWN_TYPES:
            log.debug("Unknown Docify stream event type %r kept: %.200r", event.type, data)
        return event

    def finish(self) -> RunResult:
        if self.result is not None:
            return self.result
        seen = ", ".join(self.events_seen[-10:]) or "none"
        raise DocifyStreamIncompleteError(
            f"The Docify stream ended without COMPLETE or ERROR (session {self.session_id or 'unknown'}, "
            f"{len(self.events_seen)} event(s) seen, last: {seen}"
            + (f", {self.malformed} malformed" if self.malformed else "")
            + "). The run may have finished and been billed; its result was not received.",
            endpoint=self.endpoint,
            session_id=self.session_id,
            events_seen=self.events_seen,
        )


def raise_if_failed(result: RunResult, endpoint: str, *, session_id: str | None = None) -> RunResult:
    if not result.is_success:
        raise DocifyRunFailedError(
            f"Docify run {result.run_id or '?'} failed: {result.error_message or 'no error message'}",
            endpoint=endpoint,
            run_id=result.run_id,
            session_id=session_id,
            error=result.error_message,
            result=result.raw,
        )
    return result
