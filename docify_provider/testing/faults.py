"""Faults the emulator can inject, each observable at the socket like a real faulty server.

A client's retry, timeout, streaming and download code can only be trusted if it has seen the
failures production will show it: rate limits, gateway errors, dropped connections, broken
event streams, lying metadata. Inject them with ``emu.inject(Fault(endpoint, kind, **params))``.

Matching: faults are checked in injection order. A request consumes at most one *request*
fault (``latency``, ``status``, ``drop_before_response``, ``redirect``; applied before
authentication, like a proxy) and, once its run has passed validation, at most one *run*
fault (every other kind). ``times`` is how many requests a fault applies to (None: every
request); ``key`` limits it to requests presenting that API key.

Kinds and their parameters:

* ``latency(seconds)`` - wait ``seconds`` after reading the request, then respond normally.
* ``status(status, retry_after=None, message=None, code=None)`` - respond with that HTTP
  status and a JSON error body (``Retry-After`` header when ``retry_after`` is set); no run is
  started. ``code`` is the Dify error code (default: from the status, e.g. 429 ->
  ``too_many_requests``); the Docify body's code is always the status.
* ``drop_before_response(run_started=False)`` - read the request, then shut the socket down
  without any response. With ``run_started`` a valid run is counted as started first (the
  "outcome unknown" case: the server began, and bills, a run the client never heard about).
* ``redirect(location, status=302)`` - respond with a redirect to ``location``.
* ``drop_mid_stream(after_events)`` - stream: send N events, then close the socket without
  the terminating zero-length chunk.
* ``end_without_complete(after_events)`` - stream: send N events, then end the response
  cleanly with no COMPLETE or ERROR event.
* ``error_event(message="Emulated scenario failure")`` - stream: after START and the PREPARE
  events send an ERROR event and end cleanly.
* ``failed_run(message="Emulated scenario failure")`` - run/stream: the final response has
  ``isSuccess`` false and ``errorMessage`` set; cost points are still charged.
* ``malformed_event()`` - stream: one event whose data is not valid JSON, then continue.
* ``unknown_event()`` - stream: an event of type ``HEARTBEAT_V2`` before COMPLETE.
* ``slow_events(interval)`` - stream: ``interval`` seconds between events (pings continue).
* ``stall(after_events, seconds)`` - stream: send N events, then nothing at all (no pings)
  for ``seconds``, then close the socket abruptly.
* ``huge_event(size)`` - stream: one TEXT event whose content is ``size`` bytes, written in
  several HTTP chunks / TCP writes.
* ``lying_file_size(factor=None, delta=None)`` - run/stream: attachments declare
  ``fileSize`` = true size * factor (or + delta) while the download serves the true bytes.
* ``attachment_name(name)`` - run/stream: the produced attachment is called ``name`` (for
  hostile names: ``../../etc/passwd``, absolute paths, NUL, very long, odd Unicode).
* ``attachment_size(size, declared=None)`` - run/stream: the produced attachment is ``size``
  zero bytes, generated while it is downloaded (never held in memory, so multi-GB bodies
  cost nothing); ``fileSize`` declares ``declared`` (default: ``size``).
* ``endless(interval=0.05, seconds=30)`` - stream: after START and the PREPARE events, a TEXT
  event every ``interval`` seconds and never COMPLETE or ERROR; the emulator ends the stream
  cleanly after ``seconds`` so that it stops by itself.

For stream kinds, N events counts START, PREPARE_START, PREPARE_END and TEXT events; it is
capped so that the terminal COMPLETE event is never sent.

Dify emulator (:mod:`docify_provider.testing.dify`). Endpoints: ``info``, ``parameters``,
``upload``, ``run`` (blocking), ``stream`` (streaming run), ``run_detail``, ``stop``,
``events`` (re-attach), ``logs``, ``form`` (human-input form GET/POST) and ``download``
(output files). A Dify run executes in the background, so the stream kinds
(``drop_mid_stream``, ``end_without_complete``, ``stall``, ``malformed_event``,
``unknown_event``, ``huge_event``, ``slow_events``), which also apply to ``events``, cut or
shape the *connection* while the run goes on and completes; N events counts the ``data:``
frames sent (pings excluded). ``error_event`` sends Dify's ``error`` event (no task_id, no
data), marks the run failed and, as on Dify, does not end the stream (it ends on idle close).
``failed_run`` fails the LLM node (``node_finished`` and ``workflow_finished`` status
``failed``). Dify-only kinds:

* ``timeout_after_start(status=524, seconds=0.0)`` - blocking run: start the run, wait
  ``seconds``, then answer ``status`` with a gateway's HTML body; the run completes in the
  background and shows in the run detail and the logs.
* ``ignore_stop()`` - stop: answer ``{"result": "success"}`` and do not stop the run.
* ``partial_success(message=...)`` - run/stream: one node fails with an error strategy, the
  run ends ``partial-succeeded`` (outputs set, ``exceptions_count`` 1).
* ``error_event(message=..., code=None)`` also applies to a blocking ``run``: the model
  provider's error (``code``: ``provider_not_initialize``, ``provider_quota_exceeded``,
  ``model_currently_not_support``, ``completion_request_error`` (default) or
  ``rate_limit_error``) fails the started run. With ``server_profile="current"`` the blocking
  call is answered HTTP 400 with that code (429 for ``rate_limit_error``), as the newest Dify
  does (Part C2); ``"documented"``: 200 with ``status: failed``.
* ``rejected_input(message="topic is required in input form")`` - run/stream, on both Dify
  emulators (the OpenAPI's runs are ``stream``): the inputs fail a check only the server can
  make, answered as that emulator answers its own input errors. A streaming run with
  ``server_profile="current"``: 200, a ping, then ``{"event": "error", "message": ...,
  "status": 500}`` (no code, task or run id) and pings only until the idle close, as Dify's
  worker-side validation answers (Part C1); ``emu.worker_error_streams`` says how each such
  body ended. Blocking Service API runs, and ``"documented"``: a synchronous 400 (Service API
  ``invalid_param`` with the message; OpenAPI ``bad_request`` "invalid run input").
  **No run is counted as started**, HTTP 200 or not: the worker validates the inputs before the
  graph runs, so no run exists (no run id in the frame, none in the logs) and nothing is billed;
  ``emu.requests`` still shows the one run request.

Dify OpenAPI emulator (:mod:`docify_provider.testing.dify_openapi`). Runs (always SSE) are
``stream``; ``stop``, ``events`` and ``form`` (the form read) as above; request faults also apply
to ``form_submit`` (the form answer), ``probe`` (``/_health`` ...), ``account``, ``sessions``,
``workspaces``, ``apps``, ``describe`` and ``device`` (the OAuth device flow); ``rejected_input``
(above) is the worker's rejection of a run's inputs there too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DIFY_ENDPOINTS = ("parameters", "run_detail", "stop", "events", "logs", "form")
#: Dify user-scoped OpenAPI emulator only (its runs are ``stream``; also stop/events/form).
#: ``form_submit`` is the OpenAPI's form answer (POST), apart from its read (``form``) so that a
#: fault can hit the answer of a submit, which reads the form first.
OPENAPI_ENDPOINTS = ("probe", "account", "sessions", "workspaces", "apps", "describe", "device", "form_submit")
ENDPOINTS = ("info", "upload", "run", "stream", "download", *DIFY_ENDPOINTS, *OPENAPI_ENDPOINTS, "*")

_ANY = frozenset(ENDPOINTS) - {"*"}
_STREAM = frozenset({"stream", "events"})
_RUNS = frozenset({"run", "stream"})

#: kind -> (endpoints it applies to, required params, optional params with defaults)
_KINDS: dict[str, tuple[frozenset[str], tuple[str, ...], dict[str, Any]]] = {
    "latency": (_ANY, ("seconds",), {}),
    "status": (_ANY, ("status",), {"retry_after": None, "message": None, "code": None}),
    "drop_before_response": (_ANY, (), {"run_started": False}),
    "redirect": (_ANY, ("location",), {"status": 302}),
    "drop_mid_stream": (_STREAM, ("after_events",), {}),
    "end_without_complete": (_STREAM, ("after_events",), {}),
    "error_event": (_STREAM | {"run"}, (), {"message": "Emulated scenario failure", "code": None}),
    "failed_run": (_RUNS, (), {"message": "Emulated scenario failure"}),
    "malformed_event": (_STREAM, (), {}),
    "unknown_event": (_STREAM, (), {}),
    "slow_events": (_STREAM, ("interval",), {}),
    "stall": (_STREAM, ("after_events", "seconds"), {}),
    "huge_event": (_STREAM, ("size",), {}),
    "lying_file_size": (_RUNS, (), {"factor": None, "delta": None}),
    "attachment_name": (_RUNS, ("name",), {}),
    "attachment_size": (_RUNS, ("size",), {"declared": None}),
    "endless": (frozenset({"stream"}), (), {"interval": 0.05, "seconds": 30.0}),
    "timeout_after_start": (frozenset({"run"}), (), {"status": 524, "seconds": 0.0}),
    "ignore_stop": (frozenset({"stop"}), (), {}),
    "partial_success": (_RUNS, (), {"message": "Emulated node failure (continued by its error strategy)"}),
    "rejected_input": (_RUNS, (), {"message": "topic is required in input form"}),
}

#: Kinds applied when the request arrives (before auth); the others apply to started runs.
REQUEST_KINDS = frozenset({"latency", "status", "drop_before_response", "redirect"})
KINDS = frozenset(_KINDS)


@dataclass(init=False)
class Fault:
    """One injected fault; see the module docstring for kinds and parameters.

    ``Fault("stream", "drop_mid_stream", after_events=3)``,
    ``Fault("run", "status", status=429, retry_after=2, times=2)``.
    Unknown kinds, endpoints or parameters raise ``ValueError``. ``hits`` counts how many
    requests the fault has been applied to.
    """

    endpoint: str
    kind: str
    times: int | None
    key: str | None = field(repr=False)
    seconds: float | None = None
    status: int | None = None
    retry_after: float | str | None = None
    message: str | None = None
    run_started: bool = False
    location: str | None = None
    after_events: int | None = None
    interval: float | None = None
    size: int | None = None
    factor: float | None = None
    delta: int | None = None
    name: str | None = None
    declared: int | None = None
    code: str | None = None
    hits: int = 0

    def __init__(
        self,
        endpoint: str,
        kind: str,
        *,
        times: int | None = 1,
        key: str | None = None,
        **params: Any,
    ) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown fault endpoint {endpoint!r}; expected one of {ENDPOINTS}")
        if kind not in _KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(_KINDS)}")
        endpoints, required, optional = _KINDS[kind]
        if endpoint != "*" and endpoint not in endpoints:
            raise ValueError(f"fault kind {kind!r} does not apply to endpoint {endpoint!r}")
        allowed = set(required) | set(optional)
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(f"fault kind {kind!r} takes no field(s) {unknown}; allowed: {sorted(allowed)}")
        missing = [p for p in required if params.get(p) is None]
        if missing:
            raise ValueError(f"fault kind {kind!r} requires field(s) {missing}")
        if times is not None and times < 1:
            raise ValueError("times must be a positive int or None (every time)")
        self.endpoint, self.kind, self.times, self.key = endpoint, kind, times, key
        self.seconds = self.status = self.retry_after = self.message = None
        self.location = self.after_events = self.interval = self.size = None
        self.factor = self.delta = self.name = self.declared = self.code = None
        self.run_started = False
        self.hits = 0
        for name, value in {**optional, **params}.items():
            setattr(self, name, value)
        self._check_values()

    def _check_values(self) -> None:
        if self.kind == "lying_file_size" and (self.factor is None) == (self.delta is None):
            raise ValueError("lying_file_size needs exactly one of factor or delta")
        if self.after_events is not None and self.after_events < 0:
            raise ValueError("after_events must be >= 0")
        http_status = self.status is not None and 100 <= self.status <= 599
        if self.kind in ("status", "timeout_after_start") and not http_status:
            raise ValueError("status must be an HTTP status code")
        if self.kind == "redirect" and self.status not in (301, 302, 303, 307, 308):
            raise ValueError("redirect status must be one of 301, 302, 303, 307, 308")
        if self.kind in ("huge_event", "attachment_size") and (self.size is None or self.size < 1):
            raise ValueError(f"{self.kind} size must be a positive number of bytes")
        if self.declared is not None and self.declared < 0:
            raise ValueError("declared must be >= 0 bytes")
        if self.kind == "endless" and not (float(self.interval or 0) > 0 and float(self.seconds or 0) > 0):
            raise ValueError("endless needs a positive interval and a positive seconds bound")

    @property
    def phase(self) -> str:
        """``"request"`` for faults applied on arrival, ``"run"`` for faults on started runs."""
        return "request" if self.kind in REQUEST_KINDS else "run"

    def applies_to(self, endpoint: str) -> bool:
        """Whether this fault's kind and endpoint filter match a request to ``endpoint``."""
        return (self.endpoint in ("*", endpoint)) and endpoint in _KINDS[self.kind][0]

    @property
    def exhausted(self) -> bool:
        """True once the fault has been applied ``times`` times."""
        return self.times is not None and self.hits >= self.times
