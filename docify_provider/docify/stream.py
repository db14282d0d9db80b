"""Docify's stream verdict: decoded SSE messages -> ``StreamEvent``s, and how the run ended.

The bounds on a stream (event size, idle clock, deadline) are shared by every backend and live in
``docify_provider._core.sse.BoundedEventText`` (re-exported here under its old name).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from docify_provider._core.sse import BoundedEventText
from docify_provider._core.sse import json_decode as _json_decode
from docify_provider.docify.errors import (
    DocifyProtocolError,
    DocifyRunFailedError,
    DocifyStreamIncompleteError,
)
from docify_provider.docify.models import EventType, RunResult, StreamEvent
from docify_provider.docify.protocol import DocifyProtocol

if TYPE_CHECKING:
    from httpx_sse import ServerSentEvent

log = logging.getLogger(__name__)

__all__ = ["BoundedEventText", "StreamTracker", "raise_if_failed"]

_ERROR = EventType.ERROR.value
_COMPLETE = EventType.COMPLETE.value
_KNOWN_TYPES = frozenset(EventType.__members__)
_NON_TERMINAL_TYPES = _KNOWN_TYPES - {_ERROR, _COMPLETE}


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
