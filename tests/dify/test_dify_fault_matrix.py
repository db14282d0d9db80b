"""The Dify fault matrix: every Dify path against every Dify emulator fault, in one table.

Same structure as the Docify matrix (``tests/docify/test_fault_matrix.py``; the machinery is in
``tests/fault_matrix_table.py``): each row of ``CELLS`` says what a DAG author gets when Dify (or
the network) misbehaves in one way on one path, the normal result ("recovered") or one
``DifyError`` subclass, and how many runs the emulator started (= billed) for the key. The point
of these columns: a cut stream or a lost blocking answer is *recovered* (re-attached by run id, or
found again in the app's logs) with exactly one run, never two. ``scripts/fault_matrix.py``
renders the table into the "Dify" section of ``docs/fault-matrix.md``.

Paths go through what a DAG uses: ``DifyHook`` on a worker (connection from ``AIRFLOW_CONN_*``,
backoff shortened because it is not a connection extra) and ``DifyWorkflowTrigger.run()`` on an
event loop, its error event turned back into the exception by ``error_from_event``. Every case
gets a fresh emulator, so counters start at zero; HTTP goes over 127.0.0.1 to the emulator.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fault_matrix_table as table
import pytest
from fault_matrix_table import Cell, FaultSpec, Inject, fault, index_columns, status

from docify_provider._core.errors import ProviderError
from docify_provider.dify.errors import (
    DifyAuthenticationError,
    DifyBadRequestError,
    DifyError,
    DifyNotFoundError,
    DifyOutcomeUnknownError,
    DifyRunFailedError,
    DifyRunNotStartedError,
    DifyServerError,
)
from docify_provider.dify.models import OutputFile
from docify_provider.testing.dify import DISABLED_APP_KEY, DOCUMENT_APP_KEY, LONG_APP_KEY, TEXT_APP_KEY, DifyEmulator

if TYPE_CHECKING:
    from docify_provider.hooks.dify import DifyHook

#: A fresh emulator per cell (counters at zero), quick pings and events, Dify's own idle close (300 s).
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.emulator(ping_interval=0.1, event_interval=0.002, idle_close_seconds=300.0),
]

#: A key the emulator does not know: it answers 401, as Dify does for a wrong app key.
WRONG_KEY = "app-EmuUnknownKey0000000000009"
#: How long a lost blocking answer is looked for in the logs (the run itself takes ~50 ms).
RECOVERY_TIMEOUT = 1.5
POLL_INTERVAL = 0.05
USER = "fault-matrix-user"
TEXT_INPUTS = {"topic": "fault matrices", "tone": "casual"}
DOCUMENT_TEXT = b"Dify reads documents.\nIt also writes CSV reports.\n"

# --- the table ---------------------------------------------------------------------------------

#: The columns: path id, title, the emulator endpoint its faults are injected on, and that
#: endpoint's request path tail (a request to a wrong base URL is matched by it).
_COLUMNS = (
    ("info", "App info", "info", "/info"),
    ("parameters", "Parameters", "parameters", "/parameters"),
    ("upload", "Upload", "upload", "/files/upload"),
    ("run", "Blocking run", "run", "/workflows/run"),
    ("stream", "Streaming run (worker)", "stream", "/workflows/run"),
    ("deferred", "Streaming run (deferred, trigger)", "stream", "/workflows/run"),
    ("download", "Output-file download", "download", ".csv"),
    ("stop", "Stop (`stop_task`)", "stop", "/stop"),
)
PATHS, TAILS = index_columns(_COLUMNS)


def _refusal(status: int, why: str | None, inject: Inject, what: str) -> FaultSpec:
    """401/403/404: made by the key or base URL; on downloads (no key is sent) by a status fault."""
    title = f"{status} ({why})" if why else str(status)
    return FaultSpec(title, inject, f'{what} (downloads: `Fault("download", "status", status={status})`)')


_STREAM = '"stream"'

FAULTS: dict[str, FaultSpec] = {
    "latency": table.LATENCY,
    "400": status(400),
    "401": _refusal(401, "wrong API key", Inject(key=WRONG_KEY), "a key the emulator does not know"),
    "403": _refusal(403, "app's API service disabled", Inject(key=DISABLED_APP_KEY), "the emulator's disabled app key"),
    "404": _refusal(404, None, Inject(base_url_suffix="-missing"), "a wrong base URL"),
    **table.DIFY_SERVER_STATUS_ROWS,
    "drop_before_response": fault(
        "Connection dropped before the response (no run started)",
        "drop_before_response",
        note="once: the server read the request, then closed the socket",
    ),
    "drop_after_start": fault(
        "Connection dropped before the response (run started)",
        "drop_before_response",
        note="once: the run was started (and runs on), then the socket was closed without an answer",
        run_started=True,
    ),
    "timeout_after_start": fault(
        "524 after the run started (gateway timeout)",
        "timeout_after_start",
        '"run"',
        "the run goes on and completes in the background",
        status=524,
    ),
    "drop_mid_stream": fault(
        "Connection dropped mid-stream", "drop_mid_stream", _STREAM, "the run goes on", after_events=3
    ),
    "end_without_complete": fault(
        "Stream closed without workflow_finished",
        "end_without_complete",
        _STREAM,
        "the body ends cleanly, the run goes on",
        after_events=3,
    ),
    "stall": table.STALL,
    "slow_events": fault("Slow events (0.05 s apart)", "slow_events", _STREAM, interval=0.05),
    "malformed_event": table.MALFORMED_EVENT,
    "unknown_event": fault("Unknown event type", "unknown_event", _STREAM, "`agent_log`"),
    "huge_event": fault(
        "Huge event (1 MiB text_chunk)",
        "huge_event",
        _STREAM,
        "one event in many chunks and TCP writes",
        size=1024 * 1024,
    ),
    "error_event": fault(
        "error event",
        "error_event",
        _STREAM,
        "Dify's `error` event, the run marked failed",
        message="Model quota exceeded",
    ),
    "rejected_input": fault(
        "Input rejected by the server (worker-side on streams)",
        "rejected_input",
        note="a check only the server makes; no run starts. Streams: 200, a ping, an `error` frame with no "
        "code or ids, then pings until the idle close (the newest Dify, C1); blocking: 400 `invalid_param`",
        message="topic must be a known topic",
    ),
    "provider_error": fault(
        "Model provider error (`provider_quota_exceeded`)",
        "error_event",
        note="the started run fails on its model provider: blocking is answered HTTP 400 with the code "
        "(the newest Dify, C2); streams get an `error` event",
        code="provider_quota_exceeded",
        message="Quota exhausted",
    ),
    "rate_limit_error": fault(
        "Model provider rate limit (`rate_limit_error`)",
        "error_event",
        note="as above with HTTP 429: the run started, so it is a failed run, never a 429 to re-send",
        code="rate_limit_error",
        message="Rate Limit Error",
    ),
    "failed_run": fault(
        "Failed run (a node failed)",
        "failed_run",
        note="the LLM node and the run end `failed`",
        message="LLM node failed",
    ),
    "partial_success": fault(
        "Partial success",
        "partial_success",
        note="a node fails, its error strategy continues; the run ends `partial-succeeded`",
    ),
    "ignore_stop": fault("Stop ignored", "ignore_stop", '"stop"', "the stop is answered success and the run goes on"),
}

#: How a recovered cell got its result back (checked by the test: run detail read / logs searched).
REATTACHED = "re-attached"
FOUND_IN_LOGS = "found in the logs"

_NO_STREAM = "no event stream on this endpoint"
_NO_RUN = "no run on this endpoint"
_BLOCKING_NO_STREAM = "a blocking run has no event stream"
_NO_STOP = "no stop on this path: operators stop a run (the Stop column) only when a task is killed or times out"
#: How an ignored stop ends: ``stop_task`` returns the run as it really is, and logs a warning.
STILL_RUNNING = "returns the run still running; a warning says so"
_SAME_AS_DROP = "no run on this endpoint: the same as the dropped-connection row"
_STREAMS_NOT_BLOCKING = "blocking runs only: a stream is answered at once, before any gateway timeout"

#: The two streaming paths (the other run path is "run"; every other path is repeatable, "safe").
STREAM_PATHS = ("stream", "deferred")


ok, fails, Spec = table.ok, table.fails, table.Spec


def row(
    fault: str,
    *,
    safe: Spec | None = None,
    runs: Spec | None = None,
    streams: Spec | None = None,
    **by_path: Spec,
) -> list[Cell]:
    """One fault's cells in ``PATHS`` order: a path's own spec, else its group's (``streams`` for
    the two streaming paths, ``runs`` for every run path, ``safe`` for the others: info,
    parameters, upload, download and stop)."""

    def spec_of(path: str) -> Spec | None:
        group = (streams or runs) if path in STREAM_PATHS else runs if path == "run" else safe
        return by_path.get(path) or group

    return table.cells_for(fault, PATHS, spec_of)


def _refused(expected: type[DifyError], status: int) -> list[Cell]:
    """401/403/404: a worker's run paths fail on ``GET /parameters``, before any run request."""
    return row(
        str(status),
        safe=fails(expected),
        runs=fails(expected, requests=0),
        deferred=fails(expected),
        download=fails(expected, inject=Inject("status", {"status": status})),
    )


def _retried_gateway(status: int) -> list[Cell]:
    """502/504/524: safe requests retried; a lost answer to a run searched for in the logs."""
    return row(str(status), safe=ok(requests=2), runs=fails(DifyOutcomeUnknownError))


def _stream_only(fault: str, spec: Cell, blocking: str = _BLOCKING_NO_STREAM) -> list[Cell]:
    return row(fault, safe=_NO_STREAM, run=blocking, streams=spec)


def _runs_only(fault: str, spec: Cell) -> list[Cell]:
    return row(fault, safe=_NO_RUN, runs=spec)


CELLS: list[Cell] = [
    # answered late, within every timeout
    *row("latency", safe=ok(), runs=ok(1)),
    # the server rejected the request or the key: nothing is retried, nothing started
    *row("400", safe=fails(DifyBadRequestError), runs=fails(DifyBadRequestError)),
    *_refused(DifyAuthenticationError, 401),
    *_refused(DifyAuthenticationError, 403),
    *_refused(DifyNotFoundError, 404),
    # 429 without Retry-After: safe requests retried after backoff; a run request never re-sent
    *row("429", safe=ok(requests=2), runs=fails(DifyRunNotStartedError)),
    # 500: not retried; to a run it may hide a started run, so the logs are searched first (blocking
    # and streams alike: a stream that broke before its first event has no run id to re-attach by)
    *row("500", safe=fails(DifyServerError), runs=fails(DifyOutcomeUnknownError)),
    *_retried_gateway(502),
    *row("503", safe=ok(requests=2), runs=fails(DifyServerError)),
    *_retried_gateway(504),
    *_retried_gateway(524),
    # dropped before the response: safe requests retried; a run request is not re-sent. Once the
    # run started, it is found in the logs (a stream that saw no event too) and waited for
    *row("drop_before_response", safe=ok(requests=2), runs=fails(DifyOutcomeUnknownError)),
    *row("drop_after_start", safe=_SAME_AS_DROP, runs=ok(1, recovery=FOUND_IN_LOGS)),
    *row("timeout_after_start", safe=_NO_RUN, run=ok(1, recovery=FOUND_IN_LOGS), streams=_STREAMS_NOT_BLOCKING),
    # stream faults: the run goes on without the connection; a cut stream is re-attached by run id
    *_stream_only("drop_mid_stream", ok(1, recovery=REATTACHED)),
    *_stream_only("end_without_complete", ok(1, recovery=REATTACHED)),
    *_stream_only("stall", ok(1, recovery=REATTACHED)),
    *_stream_only("slow_events", ok(1)),
    *_stream_only("malformed_event", ok(1)),
    *_stream_only("unknown_event", ok(1)),
    *_stream_only("huge_event", ok(1)),
    *_stream_only(
        "error_event", fails(DifyRunFailedError, 1), "a blocking run has no events: see the model-provider rows"
    ),
    # the server refused the inputs: nothing started; on a stream the in-band frame ends it at once
    *row("rejected_input", safe=_NO_RUN, run=fails(DifyBadRequestError), streams=fails(DifyRunFailedError)),
    # a started run failed on its model provider (blocking: an HTTP error naming the code)
    *row("provider_error", safe=_NO_RUN, run=fails(DifyBadRequestError, 1), streams=fails(DifyRunFailedError, 1)),
    *_runs_only("rate_limit_error", fails(DifyRunFailedError, 1)),
    # the run itself failed, or partly (a warning is logged; outputs are returned)
    *_runs_only("failed_run", fails(DifyRunFailedError, 1)),
    *_runs_only("partial_success", ok(1)),
    *row("ignore_stop", safe=_NO_STOP, runs=_NO_STOP, stop=ok(recovery=STILL_RUNNING)),
]

TESTED = table.cells_to_test(CELLS)


# --- driving one cell -------------------------------------------------------------------------


@dataclass
class Case:
    """Everything a path needs for one cell: the emulator, a connection factory and a scratch folder."""

    emulator: DifyEmulator
    monkeypatch: pytest.MonkeyPatch
    tmp: Path
    inject: Inject
    #: The output file the download path fetches, produced by a run before the fault is injected.
    output_file: OutputFile | None = None
    #: (task_id, workflow_run_id) of the running run the stop path stops.
    started: tuple[str, str] | None = None

    @property
    def key(self) -> str:
        """The key the cell's call presents (and whose runs are counted)."""
        return self.inject.key or TEXT_APP_KEY

    def conn(self, key: str | None = None) -> str:
        """An ``AIRFLOW_CONN_*`` connection of type dify for the cell's key and base URL."""
        conn_id = "dify_fault_matrix"
        extra = {
            "idle_timeout": table.IDLE_TIMEOUT,
            "connect_timeout": 2,
            "read_timeout": 10,
            "max_retries": 3,
            "recovery_timeout": RECOVERY_TIMEOUT,
            "poll_interval": POLL_INTERVAL,
        }
        conn = {
            "conn_type": "dify",
            "host": self.emulator.base_url + self.inject.base_url_suffix,
            "password": key or self.key,
            "extra": extra,
        }
        self.monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    def hook(self, key: str | None = None) -> DifyHook:
        """The hook a task would use, for the cell's key and base URL, with fast backoff."""
        from docify_provider.hooks.dify import DifyHook

        return table.fast_hook(DifyHook, self.conn(key))  # type: ignore[no-any-return]

    def document(self) -> str:
        path = self.tmp / "report_notes.txt"
        path.write_bytes(DOCUMENT_TEXT)
        return str(path)


def _info(case: Case) -> None:
    assert case.hook().get_app_info().name == "Text Writer"


def _parameters(case: Case) -> None:
    assert case.hook().get_parameters().variable("topic") is not None


def _upload(case: Case) -> None:
    uploaded = case.hook().upload_file(case.document(), user=USER)
    assert uploaded.id and uploaded.size == len(DOCUMENT_TEXT)


def _check_text_run(run: Any) -> None:
    assert run.status in ("succeeded", "partial-succeeded") and run.workflow_run_id
    assert "fault matrices" in str((run.outputs or {}).get("text"))


def _blocking_run(case: Case) -> None:
    _check_text_run(case.hook().run_workflow(TEXT_INPUTS, user=USER))


def _worker_stream(case: Case) -> None:
    events = list(case.hook().stream_workflow(TEXT_INPUTS, user=USER))
    final = events[-1]
    assert final.event == "workflow_finished"
    _check_text_run(final.result)


def _deferred_stream(case: Case) -> None:
    """``DifyWorkflowTrigger.run()`` on an event loop, its event turned back into what the task raises."""
    from docify_provider.events import error_from_event
    from docify_provider.operators.dify import run_from_record
    from docify_provider.triggers.dify import DifyWorkflowTrigger

    trigger = DifyWorkflowTrigger(inputs=TEXT_INPUTS, dify_conn_id=case.conn(), user=USER)
    event = table.run_trigger(trigger)
    if event.payload["status"] != "success":
        raise error_from_event(event.payload, root=DifyError)
    _check_text_run(run_from_record(event.payload["run"], case.emulator.base_url))


def _prepare_download(case: Case) -> None:
    """Buy one document run (before any fault) whose CSV report the cell then downloads."""
    run = case.hook(DOCUMENT_APP_KEY).run_workflow({"document": case.document()}, user=USER)
    (case.output_file,) = run.files


def _download(case: Case) -> None:
    assert case.output_file is not None
    stored = case.hook(DOCUMENT_APP_KEY).download_file(case.output_file, str(case.tmp / "out") + "/")
    declared = case.output_file.file_size
    assert declared and os.path.getsize(stored) == declared, "the stored file must be whole"


def _prepare_stop(case: Case) -> None:
    """Start a long run (before any fault), keep its ids from ``workflow_started``, leave it running."""
    clean = dataclasses.replace(case, inject=Inject())
    events = clean.hook(LONG_APP_KEY).stream_workflow({"seconds": 5, "steps": 1}, user=USER)
    first = next(events)
    events.close()  # the stream closes; the run goes on
    assert first.task_id and first.workflow_run_id
    case.started = (first.task_id, first.workflow_run_id)


def _stop(case: Case) -> None:
    assert case.started is not None
    task_id, run_id = case.started
    run = case.hook().stop_task(task_id, user=USER, workflow_run_id=run_id)
    assert run is not None and run.status == ("running" if case.inject.kind == "ignore_stop" else "stopped")


#: Path id -> (setup run before the fault is injected, the call under test).
RUNNERS: dict[str, tuple[Callable[[Case], None] | None, Callable[[Case], None]]] = {
    "info": (None, _info),
    "parameters": (None, _parameters),
    "upload": (None, _upload),
    "run": (None, _blocking_run),
    "stream": (None, _worker_stream),
    "deferred": (None, _deferred_stream),
    "download": (_prepare_download, _download),
    "stop": (_prepare_stop, _stop),
}


#: The app key of paths that need another app than the text one (when the cell sets none).
PATH_KEYS = {"upload": DOCUMENT_APP_KEY, "download": DOCUMENT_APP_KEY, "stop": LONG_APP_KEY}


@pytest.mark.parametrize("cell", TESTED, ids=[c.id for c in TESTED])
def test_fault(cell: Cell, emu: DifyEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    case = Case(emu, monkeypatch, tmp_path, cell.injection(FAULTS))
    if cell.path in PATH_KEYS and not case.inject.key:
        case.inject = dataclasses.replace(case.inject, key=PATH_KEYS[cell.path])
    endpoint = PATHS[cell.path][1]
    setup, call = RUNNERS[cell.path]
    if setup is not None:
        setup(case)
    table.drive_cell(
        cell,
        case.inject,
        emulator=emu,
        endpoint=endpoint,
        tail=TAILS[cell.path],
        key=case.key,
        root=DifyError,
        call=lambda: call(case),
        check_error=lambda exc: _check_error(cell, exc, case.key),
    )
    if cell.expected is None:
        _check_recovery(cell, emu)


def _check_recovery(cell: Cell, emu: DifyEmulator) -> None:
    """A recovered cell got its result the way it says: re-attached, found in the logs, or plainly."""
    detail_reads = table.requests_to(emu, "run_detail", "/run_detail-unmatched")
    log_reads = table.requests_to(emu, "logs", "/logs-unmatched")
    if cell.path == "stop":
        assert detail_reads >= 1 and log_reads == 0, "stop_task reads what the run's status became"
    elif cell.recovery == REATTACHED:
        assert detail_reads >= 1, "a cut stream is re-attached: the run detail is read first"
    elif cell.recovery == FOUND_IN_LOGS:
        assert log_reads >= 1 and detail_reads >= 1, "a lost answer is looked up in the logs, then confirmed"
    else:
        assert (detail_reads, log_reads) == (0, 0), "an answered call needs no recovery"


def _check_error(cell: Cell, exc: ProviderError, key: str) -> None:
    """What a user reads in the task log must name the cause and must not leak the key."""
    assert key not in str(exc)
    if cell.fault in ("400", "401", "403", "404", "500", "502", "503", "504", "524") and cell.expected is not (
        DifyOutcomeUnknownError
    ):
        assert getattr(exc, "status_code", None) == int(cell.fault)
    if cell.fault in ("failed_run", "error_event"):
        assert isinstance(exc, DifyRunFailedError)
        assert exc.error == FAULTS[cell.fault].inject.params["message"], "Dify's error text is kept"
        assert exc.session_id, "a failed run names its workflow_run_id"
    if cell.fault == "drop_after_start":
        assert "not re-sent" in str(exc)
    params = FAULTS[cell.fault].inject.params
    if cell.fault == "rejected_input":
        assert params["message"] in str(exc)
        if cell.path != "run":
            assert "before it started" in str(exc), "the worker's error frame names no run: say what it means"
    if cell.fault in ("provider_error", "rate_limit_error"):
        assert getattr(exc, "code", None) == params["code"] and params["message"] in str(exc)
