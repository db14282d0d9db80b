"""The Dify fault matrix: every Dify path against every Dify emulator fault, in one table.

Same structure as the Docify matrix (``tests/test_fault_matrix.py``; the machinery is in
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fault_matrix_table import (
    Cell,
    FaultSpec,
    Inject,
    cells_to_test,
    check_doc,
    check_table,
    drive_cell,
    na,
    requests_to,
    run_trigger,
)

from docify_provider._core.errors import ProviderError
from docify_provider.dify.errors import (
    DifyAuthenticationError,
    DifyBadRequestError,
    DifyError,
    DifyNotFoundError,
    DifyOutcomeUnknownError,
    DifyRateLimitedError,
    DifyRunFailedError,
    DifyRunGatewayError,
    DifyServerError,
)
from docify_provider.dify.models import OutputFile
from docify_provider.testing.dify import DISABLED_APP_KEY, DOCUMENT_APP_KEY, TEXT_APP_KEY, DifyEmulator

if TYPE_CHECKING:
    from docify_provider.hooks.dify import DifyHook

pytestmark = pytest.mark.timeout(60)

#: A key the emulator does not know: it answers 401, as Dify does for a wrong app key.
WRONG_KEY = "app-EmuUnknownKey0000000000009"
#: A stall of 3 s trips it in a second; pings (every 0.1 s) do not reset it, events (ms apart) do.
IDLE_TIMEOUT = 1.0
#: How long a lost blocking answer is looked for in the logs (the run itself takes ~50 ms).
RECOVERY_TIMEOUT = 1.5
POLL_INTERVAL = 0.05
#: Retry settings that keep every retried case in milliseconds.
FAST_RETRIES: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.05, "retry_after_cap": 0.2}
USER = "fault-matrix-user"
TEXT_INPUTS = {"topic": "fault matrices", "tone": "casual"}
DOCUMENT_TEXT = b"Dify reads documents.\nIt also writes CSV reports.\n"

# --- the table ---------------------------------------------------------------------------------

#: Path id -> (column title, emulator endpoint its faults are injected on).
PATHS: dict[str, tuple[str, str]] = {
    "info": ("App info", "info"),
    "parameters": ("Parameters", "parameters"),
    "upload": ("Upload", "upload"),
    "run": ("Blocking run", "run"),
    "stream": ("Streaming run (worker)", "stream"),
    "deferred": ("Streaming run (deferred, trigger)", "stream"),
    "download": ("Output-file download", "download"),
}

#: Request path tail of each emulator endpoint (a request to a wrong base URL is matched by it).
ENDPOINT_PATHS = {
    "info": "/info",
    "parameters": "/parameters",
    "upload": "/files/upload",
    "run": "/workflows/run",
    "stream": "/workflows/run",
    "download": ".csv",
}


def _status(status: int) -> FaultSpec:
    return FaultSpec(str(status), Inject("status", {"status": status}), f'`Fault(ep, "status", status={status})`, once')


FAULTS: dict[str, FaultSpec] = {
    "latency": FaultSpec(
        "Latency (0.2 s before answering)",
        Inject("latency", {"seconds": 0.2}),
        '`Fault(ep, "latency", seconds=0.2)`',
    ),
    "400": _status(400),
    "401": FaultSpec(
        "401 (wrong API key)",
        Inject(key=WRONG_KEY),
        'a key the emulator does not know (downloads: `Fault("download", "status", status=401)`)',
    ),
    "403": FaultSpec(
        "403 (app's API service disabled)",
        Inject(key=DISABLED_APP_KEY),
        'the emulator\'s disabled app key (downloads: `Fault("download", "status", status=403)`)',
    ),
    "404": FaultSpec(
        "404",
        Inject(base_url_suffix="-missing"),
        'a wrong base URL (downloads: `Fault("download", "status", status=404)`)',
    ),
    "429": FaultSpec(
        "429 without Retry-After",
        Inject("status", {"status": 429}),
        '`Fault(ep, "status", status=429)`, once',
    ),
    "500": _status(500),
    "502": _status(502),
    "503": _status(503),
    "504": _status(504),
    "524": _status(524),
    "drop_before_response": FaultSpec(
        "Connection dropped before the response (no run started)",
        Inject("drop_before_response"),
        '`Fault(ep, "drop_before_response")`, once: the server read the request, then closed the socket',
    ),
    "drop_after_start": FaultSpec(
        "Connection dropped before the response (run started)",
        Inject("drop_before_response", {"run_started": True}),
        '`Fault(ep, "drop_before_response", run_started=True)`, once: the run was started (and runs on), '
        "then the socket was closed without an answer",
    ),
    "timeout_after_start": FaultSpec(
        "524 after the run started (gateway timeout)",
        Inject("timeout_after_start", {"status": 524}),
        '`Fault("run", "timeout_after_start", status=524)`: the run goes on and completes in the background',
    ),
    "drop_mid_stream": FaultSpec(
        "Connection dropped mid-stream",
        Inject("drop_mid_stream", {"after_events": 3}),
        '`Fault("stream", "drop_mid_stream", after_events=3)`: the run goes on',
    ),
    "end_without_complete": FaultSpec(
        "Stream closed without workflow_finished",
        Inject("end_without_complete", {"after_events": 3}),
        '`Fault("stream", "end_without_complete", after_events=3)`: the body ends cleanly, the run goes on',
    ),
    "stall": FaultSpec(
        f"Stream idle past idle_timeout ({IDLE_TIMEOUT:g} s)",
        Inject("stall", {"after_events": 2, "seconds": 3}),
        '`Fault("stream", "stall", after_events=2, seconds=3)`: no bytes at all, not even pings',
    ),
    "slow_events": FaultSpec(
        "Slow events (0.05 s apart)",
        Inject("slow_events", {"interval": 0.05}),
        '`Fault("stream", "slow_events", interval=0.05)`',
    ),
    "malformed_event": FaultSpec(
        "Malformed event (data not JSON)", Inject("malformed_event"), '`Fault("stream", "malformed_event")`'
    ),
    "unknown_event": FaultSpec(
        "Unknown event type", Inject("unknown_event"), '`Fault("stream", "unknown_event")` (`agent_log`)'
    ),
    "huge_event": FaultSpec(
        "Huge event (1 MiB text_chunk)",
        Inject("huge_event", {"size": 1024 * 1024}),
        '`Fault("stream", "huge_event", size=1048576)`: one event in many chunks and TCP writes',
    ),
    "error_event": FaultSpec(
        "error event",
        Inject("error_event", {"message": "Model quota exceeded"}),
        '`Fault("stream", "error_event")`: Dify\'s `error` event, the run marked failed',
    ),
    "failed_run": FaultSpec(
        "Failed run (a node failed)",
        Inject("failed_run", {"message": "LLM node failed"}),
        '`Fault(ep, "failed_run")`: the LLM node and the run end `failed`',
    ),
    "partial_success": FaultSpec(
        "Partial success",
        Inject("partial_success"),
        '`Fault(ep, "partial_success")`: a node fails, its error strategy continues; `partial-succeeded`',
    ),
    "ignore_stop": FaultSpec(
        "Stop ignored",
        Inject("ignore_stop"),
        '`Fault("stop", "ignore_stop")`: the stop is answered success and the run goes on',
    ),
}

#: How a recovered cell got its result back (checked by the test: run detail read / logs searched).
REATTACHED = "re-attached"
FOUND_IN_LOGS = "found in the logs"

_NO_STREAM = "no event stream on this endpoint"
_NO_RUN = "no run on this endpoint"
_BLOCKING_NO_STREAM = "a blocking run has no event stream"
_NO_STOP = (
    "no stop on this path: a stop is sent only when a task is killed or times out "
    "(operators; `tests/test_dify_operators.py`)"
)
_SAME_AS_DROP = "no run on this endpoint: the same as the dropped-connection row"
_STREAMS_NOT_BLOCKING = "blocking runs only: a stream is answered at once, before any gateway timeout"
_DOWNLOAD_SIGNED = "output-file URLs are signed; no API key is sent or checked"

# fmt: off
CELLS: list[Cell] = [
    # latency: answered late, within every timeout
    Cell("info", "latency"),
    Cell("parameters", "latency"),
    Cell("upload", "latency"),
    Cell("run", "latency", runs=1),
    Cell("stream", "latency", runs=1),
    Cell("deferred", "latency", runs=1),
    Cell("download", "latency"),
    # 400: the server rejected the request; nothing is retried or started
    Cell("info", "400", DifyBadRequestError),
    Cell("parameters", "400", DifyBadRequestError),
    Cell("upload", "400", DifyBadRequestError),
    Cell("run", "400", DifyBadRequestError),
    Cell("stream", "400", DifyBadRequestError),
    Cell("deferred", "400", DifyBadRequestError),
    Cell("download", "400", DifyBadRequestError),
    # 401/403/404: on a worker the hook reads /parameters first, so no run request is sent
    Cell("info", "401", DifyAuthenticationError),
    Cell("parameters", "401", DifyAuthenticationError),
    Cell("upload", "401", DifyAuthenticationError),
    Cell("run", "401", DifyAuthenticationError, requests=0),
    Cell("stream", "401", DifyAuthenticationError, requests=0),
    Cell("deferred", "401", DifyAuthenticationError),
    Cell("download", "401", DifyAuthenticationError, inject=Inject("status", {"status": 401})),
    Cell("info", "403", DifyAuthenticationError),
    Cell("parameters", "403", DifyAuthenticationError),
    Cell("upload", "403", DifyAuthenticationError),
    Cell("run", "403", DifyAuthenticationError, requests=0),
    Cell("stream", "403", DifyAuthenticationError, requests=0),
    Cell("deferred", "403", DifyAuthenticationError),
    Cell("download", "403", DifyAuthenticationError, inject=Inject("status", {"status": 403})),
    Cell("info", "404", DifyNotFoundError),
    Cell("parameters", "404", DifyNotFoundError),
    Cell("upload", "404", DifyNotFoundError),
    Cell("run", "404", DifyNotFoundError, requests=0),
    Cell("stream", "404", DifyNotFoundError, requests=0),
    Cell("deferred", "404", DifyNotFoundError),
    Cell("download", "404", DifyNotFoundError, inject=Inject("status", {"status": 404})),
    # 429: safe requests retried after backoff; a run request is never re-sent
    Cell("info", "429", requests=2),
    Cell("parameters", "429", requests=2),
    Cell("upload", "429", requests=2),
    Cell("run", "429", DifyRateLimitedError),
    Cell("stream", "429", DifyRateLimitedError),
    Cell("deferred", "429", DifyRateLimitedError),
    Cell("download", "429", requests=2),
    # 500: not retried; to a blocking run it may hide a started run: the logs are searched
    Cell("info", "500", DifyServerError),
    Cell("parameters", "500", DifyServerError),
    Cell("upload", "500", DifyServerError),
    Cell("run", "500", DifyOutcomeUnknownError),
    Cell("stream", "500", DifyRunGatewayError),
    Cell("deferred", "500", DifyRunGatewayError),
    Cell("download", "500", DifyServerError),
    # 502/503/504/524: safe requests retried with backoff
    Cell("info", "502", requests=2),
    Cell("parameters", "502", requests=2),
    Cell("upload", "502", requests=2),
    Cell("run", "502", DifyOutcomeUnknownError),
    Cell("stream", "502", DifyRunGatewayError),
    Cell("deferred", "502", DifyRunGatewayError),
    Cell("download", "502", requests=2),
    Cell("info", "503", requests=2),
    Cell("parameters", "503", requests=2),
    Cell("upload", "503", requests=2),
    Cell("run", "503", DifyServerError),
    Cell("stream", "503", DifyServerError),
    Cell("deferred", "503", DifyServerError),
    Cell("download", "503", requests=2),
    Cell("info", "504", requests=2),
    Cell("parameters", "504", requests=2),
    Cell("upload", "504", requests=2),
    Cell("run", "504", DifyOutcomeUnknownError),
    Cell("stream", "504", DifyRunGatewayError),
    Cell("deferred", "504", DifyRunGatewayError),
    Cell("download", "504", requests=2),
    Cell("info", "524", requests=2),
    Cell("parameters", "524", requests=2),
    Cell("upload", "524", requests=2),
    Cell("run", "524", DifyOutcomeUnknownError),
    Cell("stream", "524", DifyRunGatewayError),
    Cell("deferred", "524", DifyRunGatewayError),
    Cell("download", "524", requests=2),
    # dropped before the response: safe requests retried; a run request is not re-sent
    Cell("info", "drop_before_response", requests=2),
    Cell("parameters", "drop_before_response", requests=2),
    Cell("upload", "drop_before_response", requests=2),
    Cell("run", "drop_before_response", DifyOutcomeUnknownError),
    Cell("stream", "drop_before_response", DifyOutcomeUnknownError),
    Cell("deferred", "drop_before_response", DifyOutcomeUnknownError),
    Cell("download", "drop_before_response", requests=2),
    na("info", "drop_after_start", _SAME_AS_DROP),
    na("parameters", "drop_after_start", _SAME_AS_DROP),
    na("upload", "drop_after_start", _SAME_AS_DROP),
    Cell("run", "drop_after_start", runs=1, recovery=FOUND_IN_LOGS),
    Cell("stream", "drop_after_start", DifyOutcomeUnknownError, runs=1),
    Cell("deferred", "drop_after_start", DifyOutcomeUnknownError, runs=1),
    na("download", "drop_after_start", _SAME_AS_DROP),
    na("info", "timeout_after_start", _NO_RUN),
    na("parameters", "timeout_after_start", _NO_RUN),
    na("upload", "timeout_after_start", _NO_RUN),
    Cell("run", "timeout_after_start", runs=1, recovery=FOUND_IN_LOGS),
    na("stream", "timeout_after_start", _STREAMS_NOT_BLOCKING),
    na("deferred", "timeout_after_start", _STREAMS_NOT_BLOCKING),
    na("download", "timeout_after_start", _NO_RUN),
    # stream faults: the run goes on without the connection; a cut stream is re-attached by run id
    *[
        cell
        for fault, recovery in (
            ("drop_mid_stream", REATTACHED), ("end_without_complete", REATTACHED), ("stall", REATTACHED),
            ("slow_events", None), ("malformed_event", None), ("unknown_event", None), ("huge_event", None),
        )
        for cell in (
            na("info", fault, _NO_STREAM),
            na("parameters", fault, _NO_STREAM),
            na("upload", fault, _NO_STREAM),
            na("run", fault, _BLOCKING_NO_STREAM),
            Cell("stream", fault, runs=1, recovery=recovery),
            Cell("deferred", fault, runs=1, recovery=recovery),
            na("download", fault, _NO_STREAM),
        )
    ],
    na("info", "error_event", _NO_STREAM),
    na("parameters", "error_event", _NO_STREAM),
    na("upload", "error_event", _NO_STREAM),
    na("run", "error_event", "a blocking run has no events: its failure is the failed-run row"),
    Cell("stream", "error_event", DifyRunFailedError, runs=1),
    Cell("deferred", "error_event", DifyRunFailedError, runs=1),
    na("download", "error_event", _NO_STREAM),
    # the run itself failed, or partly
    na("info", "failed_run", _NO_RUN),
    na("parameters", "failed_run", _NO_RUN),
    na("upload", "failed_run", _NO_RUN),
    Cell("run", "failed_run", DifyRunFailedError, runs=1),
    Cell("stream", "failed_run", DifyRunFailedError, runs=1),
    Cell("deferred", "failed_run", DifyRunFailedError, runs=1),
    na("download", "failed_run", _NO_RUN),
    na("info", "partial_success", _NO_RUN),
    na("parameters", "partial_success", _NO_RUN),
    na("upload", "partial_success", _NO_RUN),
    Cell("run", "partial_success", runs=1),
    Cell("stream", "partial_success", runs=1),
    Cell("deferred", "partial_success", runs=1),
    na("download", "partial_success", _NO_RUN),
    *[na(path, "ignore_stop", _NO_STOP) for path in PATHS],
]
# fmt: on

TESTED = cells_to_test(CELLS)


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

    @property
    def key(self) -> str:
        """The key the cell's call presents (and whose runs are counted)."""
        return self.inject.key or TEXT_APP_KEY

    def conn(self, key: str | None = None) -> str:
        """An ``AIRFLOW_CONN_*`` connection of type dify for the cell's key and base URL."""
        conn_id = "dify_fault_matrix"
        extra = {
            "idle_timeout": IDLE_TIMEOUT,
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

        hook = DifyHook(self.conn(key))
        # Backoff is not a connection extra; shorten it the way a DAG's own tests would.
        hook.config = dataclasses.replace(hook.config, **FAST_RETRIES)
        return hook

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
    event = run_trigger(trigger)
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


#: Path id -> (setup run before the fault is injected, the call under test).
RUNNERS: dict[str, tuple[Callable[[Case], None] | None, Callable[[Case], None]]] = {
    "info": (None, _info),
    "parameters": (None, _parameters),
    "upload": (None, _upload),
    "run": (None, _blocking_run),
    "stream": (None, _worker_stream),
    "deferred": (None, _deferred_stream),
    "download": (_prepare_download, _download),
}


@pytest.fixture
def dify_emulator() -> Iterator[DifyEmulator]:
    """A fresh Dify emulator per cell (counters at zero), with quick pings and events."""
    with DifyEmulator(ping_interval=0.1, event_interval=0.002) as emu:
        yield emu


@pytest.mark.parametrize("cell", TESTED, ids=[c.id for c in TESTED])
def test_fault(cell: Cell, dify_emulator: DifyEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    case = Case(dify_emulator, monkeypatch, tmp_path, cell.injection(FAULTS))
    if cell.path == "upload" and not case.inject.key:
        case.inject = dataclasses.replace(case.inject, key=DOCUMENT_APP_KEY)
    endpoint = PATHS[cell.path][1]
    setup, call = RUNNERS[cell.path]
    if setup is not None:
        setup(case)
    drive_cell(
        cell,
        case.inject,
        emulator=dify_emulator,
        endpoint=endpoint,
        tail=ENDPOINT_PATHS[endpoint],
        key=DOCUMENT_APP_KEY if cell.path == "download" else case.key,
        root=DifyError,
        call=lambda: call(case),
        check_error=lambda exc: _check_error(cell, exc, case.key),
    )
    if cell.expected is None:
        _check_recovery(cell, dify_emulator)


def _check_recovery(cell: Cell, emu: DifyEmulator) -> None:
    """A recovered cell got its result the way it says: re-attached, found in the logs, or plainly."""
    detail_reads = requests_to(emu, "run_detail", "/run_detail-unmatched")
    log_reads = requests_to(emu, "logs", "/logs-unmatched")
    if cell.recovery == REATTACHED:
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


# --- the table itself and its document ---------------------------------------------------------


def test_table_covers_every_path_and_fault_once() -> None:
    check_table(CELLS, PATHS, FAULTS)


def test_doc_is_up_to_date() -> None:
    check_doc()
