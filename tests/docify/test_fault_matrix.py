"""The fault matrix: every user-facing path against every emulator fault, in one table.

Each row of ``CELLS`` says what a DAG author gets when Docify (or the network) misbehaves in one
way on one path: the normal result ("recovered") or one documented ``DocifyError`` subclass, and
how many runs the emulator started (= billed) for the key. The same table is rendered into
``docs/fault-matrix.md`` by ``scripts/fault_matrix.py``; ``test_doc_is_up_to_date`` fails when the
two drift apart, so the document is always what these tests prove.

Paths go through what a DAG uses: ``DocifyHook`` on a worker (connection from ``AIRFLOW_CONN_*``,
backoff shortened because it is not a connection extra) and ``DocifyStreamTrigger.run()`` on an
event loop for deferrable streaming. Every case gets a fresh emulator, so counters start at zero;
nothing under test is mocked: HTTP goes over 127.0.0.1 to the emulator.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from fault_matrix_table import (
    IDLE_TIMEOUT,
    LATENCY,
    MALFORMED_EVENT,
    STALL,
    Cell,
    FaultSpec,
    Inject,
    cells_to_test,
    drive_cell,
    fast_hook,
    na,
    run_trigger,
)

from docify_provider.docify.errors import (
    DocifyAuthenticationError,
    DocifyError,
    DocifyFileError,
    DocifyNotFoundError,
    DocifyOutcomeUnknownError,
    DocifyRateLimitedError,
    DocifyRunFailedError,
    DocifyRunGatewayError,
    DocifyRunNotStartedError,
    DocifyRunTimeoutError,
    DocifyServerError,
    DocifyStreamIncompleteError,
)
from docify_provider.docify.inputs import MAX_IMAGE_BYTES
from docify_provider.docify.models import ResultFile
from docify_provider.testing import FORBIDDEN_KEY, INVOICE_KEY, SUMMARY_KEY, DocifyEmulator
from docify_provider.testing.samples import SAMPLE_PNG as PNG
from helpers import SUMMARY_INPUTS

if TYPE_CHECKING:
    from docify_provider.hooks.docify import DocifyHook

pytestmark = pytest.mark.timeout(60)

#: A key the emulator does not know: it answers 401, as Docify does for a wrong key.
WRONG_KEY = "emulator-wrong-key"

SUMMARY_WIRE = {"text": {"text": SUMMARY_INPUTS["text"]}, "language": {"text": "en"}}

# --- the table ---------------------------------------------------------------------------------

#: Path id -> (column title, emulator endpoint its faults are injected on).
PATHS: dict[str, tuple[str, str]] = {
    "info": ("Scenario info", "info"),
    "upload": ("Upload", "upload"),
    "run": ("Blocking run", "run"),
    "stream": ("Streaming run (worker)", "stream"),
    "deferred": ("Streaming run (deferred, trigger)", "stream"),
    "download": ("Attachment download", "download"),
}

#: Request path of each emulator endpoint (a request to a wrong base URL is matched by its tail).
ENDPOINT_PATHS = {
    "info": "/v1/scenario/info",
    "upload": "/v1/file/upload",
    "run": "/v1/scenario/run",
    "stream": "/v1/scenario/run/streaming",
    "download": "/download/",
}


FAULTS: dict[str, FaultSpec] = {
    "latency": LATENCY,
    "429": FaultSpec(
        "429 with Retry-After",
        Inject("status", {"status": 429, "retry_after": 1}),
        '`Fault(ep, "status", status=429, retry_after=1)`, once',
    ),
    "500": FaultSpec("500", Inject("status", {"status": 500}), '`Fault(ep, "status", status=500)`, once'),
    "502": FaultSpec("502", Inject("status", {"status": 502}), '`Fault(ep, "status", status=502)`, once'),
    "503": FaultSpec("503", Inject("status", {"status": 503}), '`Fault(ep, "status", status=503)`, once'),
    "504": FaultSpec("504", Inject("status", {"status": 504}), '`Fault(ep, "status", status=504)`, once'),
    "drop_before_response": FaultSpec(
        "Connection dropped before the response",
        Inject("drop_before_response", {"run_started": True}),
        '`Fault(ep, "drop_before_response", run_started=True)`, once: the server read the request '
        "(and started the run, for run endpoints), then closed the socket",
    ),
    "drop_mid_stream": FaultSpec(
        "Connection dropped mid-stream",
        Inject("drop_mid_stream", {"after_events": 3}),
        '`Fault("stream", "drop_mid_stream", after_events=3)`',
    ),
    "end_without_complete": FaultSpec(
        "Stream ends without COMPLETE",
        Inject("end_without_complete", {"after_events": 4}),
        '`Fault("stream", "end_without_complete", after_events=4)`',
    ),
    "error_event": FaultSpec(
        "ERROR event", Inject("error_event", {"message": "Unsupported layout"}), '`Fault("stream", "error_event")`'
    ),
    "failed_run": FaultSpec(
        "COMPLETE / result with isSuccess false",
        Inject("failed_run", {"message": "Bad scan"}),
        '`Fault(ep, "failed_run")`',
    ),
    "malformed_event": MALFORMED_EVENT,
    "unknown_event": FaultSpec(
        "Unknown event type", Inject("unknown_event"), '`Fault("stream", "unknown_event")` (`HEARTBEAT_V2`)'
    ),
    "stall": STALL,
    "401": FaultSpec(
        "401 (wrong API key)",
        Inject(key=WRONG_KEY),
        "a key the emulator does not know (downloads: with `download_requires_auth`)",
    ),
    "403": FaultSpec(
        "403 (key lacks permission)",
        Inject(key=FORBIDDEN_KEY),
        'the emulator\'s forbidden key (downloads: `Fault("download", "status", status=403)`)',
    ),
    "404": FaultSpec(
        "404",
        Inject(base_url_suffix="-missing"),
        "a wrong base URL (downloads: an expired attachment link)",
    ),
    "oversize": FaultSpec(
        "File over the size limit",
        Inject(file="oversize"),
        f"a {MAX_IMAGE_BYTES // (1024 * 1024)} MB + 1 byte PNG (sparse file)",
    ),
    "unsupported": FaultSpec("Unsupported file type", Inject(file="unsupported"), "an `.exe` file"),
}

_NO_STREAM = "no event stream on this endpoint"
_NO_RUN = "no run on this endpoint"
_NO_FILE = "no file is sent"
_BLOCKING = "a blocking run has no events: its failure is the isSuccess-false row"
_DEFERRED_FILES = (
    "files are checked and uploaded on the worker before the task defers (worker column); "
    "the trigger only gets upload ids"
)
_DOWNLOAD_FILES = "limits apply to files sent to Docify; an attachment is checked against its declared fileSize"

# fmt: off
CELLS: list[Cell] = [
    # latency: answered late, within every timeout
    Cell("info", "latency"),
    Cell("upload", "latency"),
    Cell("run", "latency", runs=1),
    Cell("stream", "latency", runs=1),
    Cell("deferred", "latency", runs=1),
    Cell("download", "latency"),
    # 429: safe requests wait Retry-After (capped) and retry; a run request is never re-sent
    Cell("info", "429", requests=2),
    Cell("upload", "429", requests=2),
    Cell("run", "429", DocifyRunNotStartedError),
    Cell("stream", "429", DocifyRunNotStartedError),
    Cell("deferred", "429", DocifyRunNotStartedError),
    Cell("download", "429", requests=2),
    # 500: not a gateway error, not retried anywhere
    Cell("info", "500", DocifyServerError),
    Cell("upload", "500", DocifyServerError),
    Cell("run", "500", DocifyRunGatewayError),
    Cell("stream", "500", DocifyRunGatewayError),
    Cell("deferred", "500", DocifyRunGatewayError),
    Cell("download", "500", DocifyServerError),
    # 502/503/504: safe requests retried with backoff; runs fail (nothing was started)
    Cell("info", "502", requests=2),
    Cell("upload", "502", requests=2),
    Cell("run", "502", DocifyRunGatewayError),
    Cell("stream", "502", DocifyRunGatewayError),
    Cell("deferred", "502", DocifyRunGatewayError),
    Cell("download", "502", requests=2),
    Cell("info", "503", requests=2),
    Cell("upload", "503", requests=2),
    Cell("run", "503", DocifyServerError),
    Cell("stream", "503", DocifyServerError),
    Cell("deferred", "503", DocifyServerError),
    Cell("download", "503", requests=2),
    Cell("info", "504", requests=2),
    Cell("upload", "504", requests=2),
    Cell("run", "504", DocifyRunGatewayError),
    Cell("stream", "504", DocifyRunGatewayError),
    Cell("deferred", "504", DocifyRunGatewayError),
    Cell("download", "504", requests=2),
    # dropped before the response: safe requests retried; a run request may have been billed
    Cell("info", "drop_before_response", requests=2),
    Cell("upload", "drop_before_response", requests=2),
    Cell("run", "drop_before_response", DocifyOutcomeUnknownError, runs=1),
    Cell("stream", "drop_before_response", DocifyOutcomeUnknownError, runs=1),
    Cell("deferred", "drop_before_response", DocifyOutcomeUnknownError, runs=1),
    Cell("download", "drop_before_response", requests=2),
    # stream faults
    na("info", "drop_mid_stream", _NO_STREAM),
    na("upload", "drop_mid_stream", _NO_STREAM),
    na("run", "drop_mid_stream", "a blocking run has no event stream: a cut answer is the dropped-before-response row"),
    Cell("stream", "drop_mid_stream", DocifyOutcomeUnknownError, runs=1),
    Cell("deferred", "drop_mid_stream", DocifyOutcomeUnknownError, runs=1),
    na("download", "drop_mid_stream", _NO_STREAM),
    na("info", "end_without_complete", _NO_STREAM),
    na("upload", "end_without_complete", _NO_STREAM),
    na("run", "end_without_complete", "a blocking run has no event stream"),
    Cell("stream", "end_without_complete", DocifyStreamIncompleteError, runs=1),
    Cell("deferred", "end_without_complete", DocifyStreamIncompleteError, runs=1),
    na("download", "end_without_complete", _NO_STREAM),
    na("info", "error_event", _NO_STREAM),
    na("upload", "error_event", _NO_STREAM),
    na("run", "error_event", _BLOCKING),
    Cell("stream", "error_event", DocifyRunFailedError, runs=1),
    Cell("deferred", "error_event", DocifyRunFailedError, runs=1),
    na("download", "error_event", _NO_STREAM),
    na("info", "failed_run", _NO_RUN),
    na("upload", "failed_run", _NO_RUN),
    Cell("run", "failed_run", DocifyRunFailedError, runs=1),
    Cell("stream", "failed_run", DocifyRunFailedError, runs=1),
    Cell("deferred", "failed_run", DocifyRunFailedError, runs=1),
    na("download", "failed_run", _NO_RUN),
    na("info", "malformed_event", _NO_STREAM),
    na("upload", "malformed_event", _NO_STREAM),
    na("run", "malformed_event", "a blocking run has no event stream"),
    Cell("stream", "malformed_event", runs=1),
    Cell("deferred", "malformed_event", runs=1),
    na("download", "malformed_event", _NO_STREAM),
    na("info", "unknown_event", _NO_STREAM),
    na("upload", "unknown_event", _NO_STREAM),
    na("run", "unknown_event", "a blocking run has no event stream"),
    Cell("stream", "unknown_event", runs=1),
    Cell("deferred", "unknown_event", runs=1),
    na("download", "unknown_event", _NO_STREAM),
    na("info", "stall", _NO_STREAM),
    na("upload", "stall", _NO_STREAM),
    na("run", "stall", "no stream: a blocking run waits up to read_timeout for its one answer"),
    Cell("stream", "stall", DocifyRunTimeoutError, runs=1),
    Cell("deferred", "stall", DocifyRunTimeoutError, runs=1),
    na("download", "stall", _NO_STREAM),
    # the server says no: never retried, never billed
    Cell("info", "401", DocifyAuthenticationError),
    Cell("upload", "401", DocifyAuthenticationError),
    Cell("run", "401", DocifyAuthenticationError, requests=0),  # the hook's scenario check fails first
    Cell("stream", "401", DocifyAuthenticationError, requests=0),
    Cell("deferred", "401", DocifyAuthenticationError),
    Cell("download", "401", DocifyAuthenticationError, inject=Inject(key=WRONG_KEY, download_requires_auth=True)),
    Cell("info", "403", DocifyAuthenticationError),
    Cell("upload", "403", DocifyAuthenticationError),
    Cell("run", "403", DocifyAuthenticationError, requests=0),
    Cell("stream", "403", DocifyAuthenticationError, requests=0),
    Cell("deferred", "403", DocifyAuthenticationError),
    Cell("download", "403", DocifyAuthenticationError, inject=Inject("status", {"status": 403})),
    Cell("info", "404", DocifyNotFoundError),
    Cell("upload", "404", DocifyNotFoundError),
    Cell("run", "404", DocifyNotFoundError, requests=0),
    Cell("stream", "404", DocifyNotFoundError, requests=0),
    Cell("deferred", "404", DocifyNotFoundError),
    Cell("download", "404", DocifyNotFoundError, inject=Inject(download_token="expired-link")),
    # bad files: refused before anything is uploaded or paid for
    na("info", "oversize", _NO_FILE),
    Cell("upload", "oversize", DocifyFileError, requests=0),
    Cell("run", "oversize", DocifyFileError, requests=0),
    Cell("stream", "oversize", DocifyFileError, requests=0),
    na("deferred", "oversize", _DEFERRED_FILES),
    na("download", "oversize", _DOWNLOAD_FILES),
    na("info", "unsupported", _NO_FILE),
    Cell("upload", "unsupported", DocifyFileError, requests=0),
    Cell("run", "unsupported", DocifyFileError, requests=0),
    Cell("stream", "unsupported", DocifyFileError, requests=0),
    na("deferred", "unsupported", _DEFERRED_FILES),
    na("download", "unsupported", "no file is sent; attachment types are whatever Docify produced"),
]
# fmt: on

TESTED = cells_to_test(CELLS)


# --- driving one cell -------------------------------------------------------------------------


@dataclass
class Case:
    """Everything a path needs for one cell: the emulator, a connection factory and a scratch folder."""

    emulator: DocifyEmulator
    docify_conn: Callable[..., str]
    tmp: Path
    inject: Inject
    #: The attachment the download path fetches, produced by a run before the fault is injected.
    attachment: ResultFile | None = None

    @property
    def key(self) -> str:
        """The key the cell's call presents (and whose runs are counted)."""
        if self.inject.key:
            return self.inject.key
        return INVOICE_KEY if self.inject.file else SUMMARY_KEY

    def conn(self, key: str | None = None) -> str:
        return self.docify_conn(
            key or self.key,
            conn_id="docify_fault_matrix",
            host=self.emulator.base_url + self.inject.base_url_suffix,
            idle_timeout=IDLE_TIMEOUT,
            max_retries=3,
        )

    def hook(self, key: str | None = None) -> DocifyHook:
        """The hook a task would use, for the cell's key and base URL, with fast backoff."""
        from docify_provider.hooks.docify import DocifyHook

        return fast_hook(DocifyHook, self.conn(key))  # type: ignore[no-any-return]

    def file(self) -> str:
        """A local file input: a small PNG, or the cell's bad file."""
        if self.inject.file == "oversize":
            path = self.tmp / "huge_scan.png"
            with open(path, "wb") as fh:
                fh.truncate(MAX_IMAGE_BYTES + 1)  # sparse: costs no disk and no time
        elif self.inject.file == "unsupported":
            path = self.tmp / "invoice.exe"
            path.write_bytes(b"MZ" + bytes(100))
        else:
            path = self.tmp / "acme_invoice.png"
            path.write_bytes(PNG)
        return str(path)

    def inputs(self) -> dict[str, Any]:
        return {"invoice_image": self.file()} if self.inject.file else dict(SUMMARY_INPUTS)


def _info(case: Case) -> None:
    info = case.hook().get_scenario_info()
    assert info.scenario_code == "TEXT_SUMMARY"


def _upload(case: Case) -> None:
    path = case.file()
    uploaded = case.hook(case.inject.key or INVOICE_KEY).upload_file(path)
    assert uploaded.upload_file_oid and uploaded.file_size == os.path.getsize(path)


def _blocking_run(case: Case) -> None:
    result = case.hook().run_scenario(case.inputs())
    assert result.is_success and result.run_id and result.json_result


def _worker_stream(case: Case) -> None:
    events = list(case.hook().stream_scenario(case.inputs()))
    final = events[-1]
    assert final.type == "COMPLETE" and final.response is not None and final.response.is_success
    assert final.response.json_result


def _deferred_stream(case: Case) -> None:
    """``DocifyStreamTrigger.run()`` on an event loop, its event turned back into what the task raises."""
    from docify_provider.triggers.docify import DocifyStreamTrigger, error_from_event

    trigger = DocifyStreamTrigger(inputs=SUMMARY_WIRE, docify_conn_id=case.conn(), idle_timeout=IDLE_TIMEOUT)
    event = run_trigger(trigger)
    if event.payload["status"] != "success":
        raise error_from_event(event.payload)
    assert event.payload["result"]["isSuccess"] is True and event.payload["session_id"]


def _prepare_download(case: Case) -> None:
    """Buy one run (before any fault) whose attachment the cell then downloads."""
    clean = Case(case.emulator, case.docify_conn, case.tmp, Inject())
    (attachment,) = clean.hook(INVOICE_KEY).run_scenario({"invoice_image": clean.file()}).files
    if case.inject.download_token:  # an expired link: the token is no longer known
        token = urlsplit(attachment.file_url).path.split("/")[-2]
        url = attachment.file_url.replace(f"/{token}/", f"/{case.inject.download_token}/")
        attachment = dataclasses.replace(attachment, file_url=url)
    case.emulator.download_requires_auth = case.inject.download_requires_auth
    case.attachment = attachment


def _download(case: Case) -> None:
    assert case.attachment is not None
    stored = case.hook(case.inject.key or INVOICE_KEY).download_file(case.attachment, str(case.tmp / "out") + "/")
    declared = case.attachment.file_size
    assert declared and os.path.getsize(stored) == declared, "the stored file must be whole"


#: Path id -> (setup run before the fault is injected, the call under test).
RUNNERS: dict[str, tuple[Callable[[Case], None] | None, Callable[[Case], None]]] = {
    "info": (None, _info),
    "upload": (None, _upload),
    "run": (None, _blocking_run),
    "stream": (None, _worker_stream),
    "deferred": (None, _deferred_stream),
    "download": (_prepare_download, _download),
}


@pytest.mark.parametrize("cell", TESTED, ids=[c.id for c in TESTED])
def test_fault(cell: Cell, emulator: DocifyEmulator, docify_conn: Callable[..., str], tmp_path: Path) -> None:
    case = Case(emulator, docify_conn, tmp_path, cell.injection(FAULTS))
    if cell.path in ("upload", "download") and not case.inject.key:
        case.inject = dataclasses.replace(case.inject, key=INVOICE_KEY)
    endpoint = PATHS[cell.path][1]
    setup, call = RUNNERS[cell.path]
    if setup is not None:
        setup(case)
    drive_cell(
        cell,
        case.inject,
        emulator=emulator,
        endpoint=endpoint,
        tail=ENDPOINT_PATHS[endpoint],
        key=case.key,
        root=DocifyError,
        call=lambda: call(case),
        check_error=lambda exc: _check_error(cell, exc, case.key),  # type: ignore[arg-type]
    )
    if cell.injection(FAULTS).file:
        assert emulator.uploads == [], "a refused file must not be uploaded"


def _check_error(cell: Cell, exc: DocifyError, key: str) -> None:
    """What a user reads in the task log must name the cause and must not leak the key."""
    assert key not in str(exc)
    if isinstance(exc, DocifyRateLimitedError):
        assert exc.retry_after == 1 and exc.status_code == 429
    if cell.fault in ("500", "502", "503", "504", "401", "403", "404"):
        assert exc.status_code == int(cell.fault)
    if cell.fault == "failed_run":
        result = exc.result if isinstance(exc, DocifyRunFailedError) else None
        assert isinstance(result, dict), "a failed run carries the server's result"
        assert result["errorMessage"] == "Bad scan" and result["isSuccess"] is False
    if cell.fault in ("drop_mid_stream", "end_without_complete", "stall", "error_event"):
        assert getattr(exc, "session_id", None), "a broken stream must name the session it saw"
    if isinstance(exc, DocifyFileError):
        assert ("MB limit" if cell.fault == "oversize" else "unsupported file type") in str(exc)
