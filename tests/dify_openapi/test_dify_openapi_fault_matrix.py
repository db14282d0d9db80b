"""The Dify account-API fault matrix: every user-scoped OpenAPI path against every emulator fault.

The third matrix (Docify: ``tests/docify/test_fault_matrix.py``, Dify Service API:
``tests/dify/test_dify_fault_matrix.py``; the machinery is ``tests/fault_matrix_table.py``). Each
cell says what a DAG author gets when Dify or the network misbehaves in one way on one path of
``DifyOpenAPIHook`` (account token, connection type ``dify_openapi``): the normal result
("recovered") or one ``DifyOpenAPIError`` subclass, and how many runs the emulator started (=
billed) for the token. What differs from the Service API: this API has no run-detail or log
endpoint, so a run whose answer was lost before any event named it cannot be looked up (outcome
unknown, never re-sent), while a stream cut after ``workflow_started`` is re-attached through the
events route. ``scripts/fault_matrix.py`` renders the table into the "Dify account API" section of
``docs/fault-matrix.md``.

Every cell gets a fresh ``DifyOpenAPIEmulator`` (current paths) over 127.0.0.1 and a fresh hook
built from an ``AIRFLOW_CONN_*`` connection, as a task would; backoff is shortened.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fault_matrix_table as table
import pytest
from fault_matrix_table import Cell, FaultSpec, Inject, fault, index_columns, status

from docify_provider._core.errors import ProviderError
from docify_provider.dify_openapi.errors import (
    DifyOpenAPIAuthenticationError,
    DifyOpenAPIBadRequestError,
    DifyOpenAPIDeviceFlowError,
    DifyOpenAPIError,
    DifyOpenAPIInputError,
    DifyOpenAPINotFoundError,
    DifyOpenAPIOutcomeUnknownError,
    DifyOpenAPIRateLimitedError,
    DifyOpenAPIRunFailedError,
    DifyOpenAPIRunGatewayError,
    DifyOpenAPIRunNotStartedError,
    DifyOpenAPIRunTimeoutError,
    DifyOpenAPIServerError,
    DifyOpenAPIStreamIncompleteError,
    DifyOpenAPITagFilterError,
)
from docify_provider.testing.dify_openapi import (
    ACCOUNT_ID,
    ACCOUNT_TOKEN,
    HUMAN_INPUT_APP_ID,
    LONG_APP_ID,
    TEXT_APP_ID,
    WORKSPACE_ID,
    DifyOpenAPIEmulator,
)

if TYPE_CHECKING:
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

#: A fresh emulator per cell: quick pings and events, no device poll limit, the server's own idle close.
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.emulator(ping_interval=0.1, event_interval=0.002, device_poll_interval=0.0, idle_close_seconds=300.0),
]

#: A well-formed token the emulator never issued: 401, as for a revoked or expired login.
WRONG_TOKEN = "dfoa_EmulatorUnknownToken000000000000000000009"
#: A token whose session lapsed (registered expired in every cell's emulator): 401 ``token_expired``.
EXPIRED_TOKEN = "dfoa_EmulatorExpiredToken000000000000000000008"
#: The apps the nightly example names (``select_apps``): what ``list_apps`` cells look for.
NIGHTLY_APPS = ["Text Writer", "Document Summary", "Long Job", "Chat Assistant", "Completion Writer"]
WORKER_MESSAGE = "topic is required in input form"
TEXT_INPUTS = {"topic": "fault matrices", "tone": "casual"}
#: The long run the re-attach and stop paths follow: short, with a silent gap in the middle.
LONG_INPUTS = {"seconds": 0.6, "steps": 1}

# --- the table ---------------------------------------------------------------------------------

#: path id, column title, the emulator endpoint its faults go to, its request path tail.
_COLUMNS = (
    ("apps", "List apps (`list_apps`)", "apps", "/apps"),
    ("describe", "Describe (`describe_app`)", "describe", f"/apps/{TEXT_APP_ID}"),
    ("run", "Run (`run_app`, stream)", "stream", "/workflow:run"),
    ("events", "Re-attach (`task_events`)", "events", "/events"),
    ("form", "Form read (`get_form`)", "form", "/form-unmatched"),
    ("submit", "Form answer (`submit_form`)", "form_submit", ":submit"),
    ("stop", "Stop (`stop_task`)", "stop", ":stop"),
    ("device", "Device login poll (`poll_device_token`)", "device", "/oauth/device/token"),
)
PATHS, TAILS = index_columns(_COLUMNS)


_STREAM = '"stream"/"events"'

FAULTS: dict[str, FaultSpec] = {
    "latency": table.LATENCY,
    "400": status(400),
    "401": FaultSpec(
        "401 (token revoked or expired)", Inject(key=WRONG_TOKEN), "a `dfoa_` token the emulator never issued"
    ),
    "403": status(403, "403 (no access, or the app's API off)"),
    "404": FaultSpec("404", Inject(base_url_suffix="-missing"), "a wrong base URL"),
    **table.DIFY_SERVER_STATUS_ROWS,
    "drop_before_response": fault(
        "Connection dropped before the response (nothing started)",
        "drop_before_response",
        note="once: the server read the request, then closed the socket",
    ),
    "drop_after_start": fault(
        "Connection dropped before the response (run started)",
        "drop_before_response",
        note="once: the run was started (and runs on), then the socket was closed without an answer",
        run_started=True,
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
        "Huge event (1 MiB text_chunk)", "huge_event", _STREAM, "one event in many chunks", size=1024 * 1024
    ),
    "error_event": fault(
        "error event", "error_event", _STREAM, "Dify's `error` event, the run marked failed", message="Quota exceeded"
    ),
    "failed_run": fault(
        "Failed run (a node failed)", "failed_run", '"stream"', "the LLM node and the run end `failed`", message="LLM"
    ),
    "partial_success": fault(
        "Partial success", "partial_success", '"stream"', "a node fails, its error strategy continues"
    ),
    "ignore_stop": fault("Stop ignored", "ignore_stop", '"stop"', "answered success, the run goes on"),
    # --- how the current Dify server differs from its documents (server-behaviour reference, Part C) ---
    "rejected_input": fault(
        "Input rejected by Dify's worker (current Dify, C1)",
        "rejected_input",
        '"stream"',
        "a check only the server makes; no run starts. HTTP 200, a ping, `{event: error, message, status: 500}` "
        "without code or ids, the body held open until the 300 s idle close",
        message=WORKER_MESSAGE,
    ),
    "token_expired": FaultSpec(
        "401 `token_expired` with a hint (current Dify, C6)",
        Inject(key=EXPIRED_TOKEN),
        "a `dfoa_` token whose session lapsed",
    ),
    "continue_on_pause": FaultSpec(
        "Re-attach with continue_on_pause held open after workflow_finished (current Dify, C3)",
        Inject(),
        "no fault: the current server's events route, `task_events(..., continue_on_pause=True)`",
    ),
    "finished_frame": FaultSpec(
        "Re-attach to a finished run: its frame's task_id is the run id (current Dify, C3)",
        Inject(),
        "no fault: the run has finished before the call",
    ),
    "tag_ignored": FaultSpec(
        "Tag filter ignored, rows without tags (current Dify, C5)",
        Inject(),
        'no fault: `list_apps(tag="nightly")` on the current server',
    ),
    "unknown_mode": FaultSpec(
        "Unknown app mode (a closed enum: Dify answers 422)",
        Inject(),
        'no fault: `list_apps(mode="workflows")`',
    ),
}

REATTACHED = "re-attached"
#: An ignored stop: ``stop_task`` reads the run's events until it ends and returns it as it ended.
RAN_TO_ITS_END = "waits for the run's end and returns it, succeeded"

_NO_STREAM = "no event stream on this endpoint"
_NO_RUN = "no run on this endpoint"
_NO_RUN_STARTS = "nothing starts a run here: the same as the dropped-connection row"
_NO_TOKEN = "the device login sends no token (it is how one is obtained)"
_NO_APP = "not app-scoped: the device login belongs to no app"
_NO_STOP = "no stop on this path: operators stop a run only when a task is killed or times out"
_RUN_FAULT = "a run fault, decided when the run starts (the Run column); a re-attach shows the run as it goes"
_REJECTED = "the worker rejects the run before it has a run id: there is nothing to re-attach to"
_REATTACH_ONLY = "a re-attach behaviour (the Re-attach column)"
_DISCOVERY_ONLY = "only app discovery filters apps"
_FINISHED_RUN_PATH = "a run's own re-attach reads the same frame: the Re-attach and Stop cells show it"

#: Paths that carry an event stream; the others answer JSON.
STREAM_PATHS = ("run", "events")
#: Reads that are safe to repeat (the form answer and the device poll are not: each is a decision).
READ_PATHS = ("apps", "describe", "form")


ok, fails, Spec = table.ok, table.fails, table.Spec


def row(fault: str, *, default: Spec | None = None, **by_path: Spec) -> list[Cell]:
    """One fault's cells in ``PATHS`` order: a path's own spec, else ``default``."""
    return table.cells_for(fault, PATHS, lambda path: by_path.get(path, default))


def _status_row(fault: str, read: Spec, **others: Spec) -> list[Cell]:
    """A status fault: the reads get ``read``; the other paths name their own cell."""
    return row(fault, **{p: read for p in READ_PATHS}, **others)


def _stream_only(fault: str, run: Spec, events: Spec) -> list[Cell]:
    return row(fault, default=_NO_STREAM, run=run, events=events)


CELLS: list[Cell] = [
    *row("latency", default=ok(), run=ok(1)),
    # the request cannot succeed as sent: not retried, nothing started
    *row(
        "400",
        default=fails(DifyOpenAPIBadRequestError),
        device=fails(DifyOpenAPIDeviceFlowError),
    ),
    # a token Dify does not know: app-scoped calls fail on the first read (the app's describe)
    *row(
        "401",
        default=fails(DifyOpenAPIAuthenticationError, requests=0),
        apps=fails(DifyOpenAPIAuthenticationError),
        describe=fails(DifyOpenAPIAuthenticationError),
        device=_NO_TOKEN,
    ),
    *row("403", default=fails(DifyOpenAPIAuthenticationError), device=fails(DifyOpenAPIDeviceFlowError)),
    *row(
        "404",
        default=fails(DifyOpenAPINotFoundError, requests=0),
        apps=fails(DifyOpenAPINotFoundError),
        describe=fails(DifyOpenAPINotFoundError),
        device=fails(DifyOpenAPIDeviceFlowError),
    ),
    # 429: reads retried after backoff; a run or a form answer never re-sent; the device poll slows down.
    # 502/503/504/524 below: the device poll polls again (a gateway's answer is no RFC 8628 error)
    *_status_row(
        "429",
        ok(requests=2),
        run=fails(DifyOpenAPIRunNotStartedError),
        events=ok(requests=2),
        submit=fails(DifyOpenAPIRateLimitedError),
        stop=ok(requests=2),
        device=ok(requests=2),
    ),
    # 500: not retried; to a run it may hide a started run (outcome unknown, no lookup on this API)
    *_status_row(
        "500",
        fails(DifyOpenAPIServerError),
        run=fails(DifyOpenAPIRunGatewayError),
        events=fails(DifyOpenAPIServerError),
        submit=fails(DifyOpenAPIRunGatewayError),
        stop=fails(DifyOpenAPIServerError),
        device=fails(DifyOpenAPIDeviceFlowError),
    ),
    *[
        cell
        for status in ("502", "504", "524")
        for cell in _status_row(
            status,
            ok(requests=2),
            run=fails(DifyOpenAPIRunGatewayError),
            events=ok(requests=2),
            submit=fails(DifyOpenAPIRunGatewayError),
            stop=ok(requests=2),
            device=ok(requests=2),
        )
    ],
    *_status_row(
        "503",
        ok(requests=2),
        run=fails(DifyOpenAPIServerError),
        events=ok(requests=2),
        submit=fails(DifyOpenAPIServerError),
        stop=ok(requests=2),
        device=ok(requests=2),
    ),
    # dropped before any answer: reads retried; a run or a form answer is not re-sent
    *row(
        "drop_before_response",
        default=ok(requests=2),
        run=fails(DifyOpenAPIOutcomeUnknownError),
        events=ok(requests=2),
        submit=fails(DifyOpenAPIOutcomeUnknownError),
        device=fails(DifyOpenAPIOutcomeUnknownError),
    ),
    *row("drop_after_start", default=_NO_RUN_STARTS, run=fails(DifyOpenAPIOutcomeUnknownError, 1)),
    # stream faults: a run's stream cut after workflow_started is re-attached; task_events reports the cut
    *_stream_only("drop_mid_stream", ok(1, recovery=REATTACHED), fails(DifyOpenAPIStreamIncompleteError)),
    *_stream_only("end_without_complete", ok(1, recovery=REATTACHED), fails(DifyOpenAPIStreamIncompleteError)),
    *_stream_only("stall", ok(1, recovery=REATTACHED), fails(DifyOpenAPIRunTimeoutError)),
    *_stream_only("slow_events", ok(1), ok()),
    *_stream_only("malformed_event", ok(1), ok()),
    *_stream_only("unknown_event", ok(1), ok()),
    *_stream_only("huge_event", ok(1), ok()),
    *_stream_only(
        "error_event",
        fails(DifyOpenAPIRunFailedError, 1),
        _RUN_FAULT,
    ),
    *row("failed_run", default=_NO_RUN, run=fails(DifyOpenAPIRunFailedError, 1), events=_RUN_FAULT),
    *row("partial_success", default=_NO_RUN, run=ok(1), events=_RUN_FAULT),
    *row("ignore_stop", default=_NO_STOP, stop=ok(recovery=RAN_TO_ITS_END), device=_NO_APP),
    # current Dify (Part C): the error frame ends the run at once (one POST, nothing re-sent, the
    # connection closed by the client; no run started, as on the Service API); an expired token as
    # the 401 row, with Dify's hint
    *row("rejected_input", default=_NO_RUN, run=fails(DifyOpenAPIRunFailedError), events=_REJECTED),
    *row(
        "token_expired",
        default=fails(DifyOpenAPIAuthenticationError, requests=0),
        apps=fails(DifyOpenAPIAuthenticationError),
        describe=fails(DifyOpenAPIAuthenticationError),
        device=_NO_TOKEN,
    ),
    *row("continue_on_pause", default=_REATTACH_ONLY, events=ok()),
    *row("finished_frame", default=_REATTACH_ONLY, events=ok(), stop=ok(), run=_FINISHED_RUN_PATH),
    *row("tag_ignored", default=_DISCOVERY_ONLY, apps=fails(DifyOpenAPITagFilterError)),
    *row("unknown_mode", default=_DISCOVERY_ONLY, apps=fails(DifyOpenAPIInputError, requests=0)),
]

TESTED = table.cells_to_test(CELLS)


# --- driving one cell -------------------------------------------------------------------------


@dataclass
class Case:
    """One cell's emulator, connection factory and what its setup left (a run, a form, a login)."""

    emulator: DifyOpenAPIEmulator
    monkeypatch: pytest.MonkeyPatch
    inject: Inject
    #: The row's fault id: the current-server rows (no emulator fault) change what the call asks.
    fault: str = ""
    #: (task_id, workflow_run_id) of the run the events and stop paths follow.
    started: tuple[str, str] | None = None
    form_token: str | None = None
    device_code: Any = None

    @property
    def key(self) -> str:
        return self.inject.key or ACCOUNT_TOKEN

    def hook(self, *, clean: bool = False) -> DifyOpenAPIHook:
        """The hook a task would use (a new client), for the cell's token and base URL unless ``clean``."""
        from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

        conn_id = "dify_openapi_fault_matrix" + ("_clean" if clean else "")
        extra = {
            "workspace_id": WORKSPACE_ID,
            "idle_timeout": table.IDLE_TIMEOUT,
            "connect_timeout": 2,
            "read_timeout": 10,
            "max_retries": 3,
            "poll_interval": 0.05,
        }
        conn = {
            "conn_type": "dify_openapi",
            "host": self.emulator.base_url + ("" if clean else self.inject.base_url_suffix),
            "password": ACCOUNT_TOKEN if clean else self.key,
            "extra": extra,
        }
        self.monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return table.fast_hook(DifyOpenAPIHook, conn_id)  # type: ignore[no-any-return]


def _apps(case: Case) -> None:
    if case.fault == "tag_ignored":
        case.hook().list_apps(tag="nightly")
        raise AssertionError("list_apps(tag=) returned apps nobody can show carry the tag")
    if case.fault == "unknown_mode":
        case.hook().list_apps(mode="workflows")
        raise AssertionError("an unknown mode was accepted")
    names = [a.name for a in case.hook().select_apps(NIGHTLY_APPS)]
    assert names == NIGHTLY_APPS


def _describe(case: Case) -> None:
    description = case.hook().describe_app(TEXT_APP_ID)
    assert description.name == "Text Writer" and description.input_schema


def _run(case: Case) -> None:
    started = time.monotonic()
    try:
        events = list(case.hook().run_app(TEXT_APP_ID, TEXT_INPUTS))
    finally:  # the server holds an error frame's body open 300 s: the client must not wait for it
        assert time.monotonic() - started < 30
    final = events[-1]
    assert final.event == "workflow_finished"
    run = final.result
    assert run is not None and run.status in ("succeeded", "partial-succeeded")
    assert "fault matrices" in str((run.outputs or {}).get("text"))


def _start_long(case: Case) -> None:
    """Start a long run with a clean hook, keep its ids from ``workflow_started``, leave it running."""
    events = case.hook(clean=True).run_app(LONG_APP_ID, LONG_INPUTS)
    first = next(events)
    events.close()  # the stream closes; the run goes on
    assert first.task_id and first.workflow_run_id
    case.started = (first.task_id, first.workflow_run_id)


def _events(case: Case) -> None:
    assert case.started is not None
    run_id = case.started[1]
    if case.fault == "finished_frame":
        case.emulator.wait_run_finished(run_id, timeout=10)
    started = time.monotonic()
    events = list(
        case.hook().task_events(
            LONG_APP_ID, run_id, include_state_snapshot=True, continue_on_pause=case.fault == "continue_on_pause"
        )
    )
    assert time.monotonic() - started < 30, "ended at workflow_finished, not at the server's idle close"
    assert events[-1].event == "workflow_finished" and events[-1].run is not None
    assert events[-1].run.status == "succeeded"
    if case.fault == "finished_frame":
        assert len(events) == 1 and events[0].task_id is None, "the run id is never taken for the task id"
        assert events[-1].result is not None and events[-1].result.task_id != run_id


def _pause(case: Case) -> None:
    """Run the review app with a clean hook up to its human-input form."""
    events = list(case.hook(clean=True).run_app(HUMAN_INPUT_APP_ID, {"topic": "budget"}))
    assert events[-1].event == "workflow_paused"
    (form,) = events[-1].forms
    case.form_token = form.form_token


def _form(case: Case) -> None:
    assert case.form_token is not None
    form = case.hook().get_form(HUMAN_INPUT_APP_ID, case.form_token)
    assert form.action_ids == ["approve", "reject"]


def _submit(case: Case) -> None:
    assert case.form_token is not None
    case.hook().submit_form(HUMAN_INPUT_APP_ID, case.form_token, "approve", {"comment": "fine"})
    (run,) = case.emulator.runs
    case.emulator.wait_run_finished(run.id, timeout=5)
    assert run.status == "succeeded"


def _stop(case: Case) -> None:
    assert case.started is not None
    task_id, run_id = case.started
    if case.fault == "finished_frame":
        case.emulator.wait_run_finished(run_id, timeout=10)
    run = case.hook().stop_task(LONG_APP_ID, task_id, workflow_run_id=run_id)
    ended = "succeeded" if case.inject.kind == "ignore_stop" or case.fault == "finished_frame" else "stopped"
    assert run is not None and run.status == ended
    assert run.task_id != run_id, "the finished frame's task_id (the run id) is not the run's task"


def _login(case: Case) -> None:
    """Start a device login and approve it in the console, before the fault."""
    case.device_code = case.hook(clean=True).client.start_device_flow(device_label="fault matrix")
    case.emulator.approve(case.device_code.user_code)


def _poll(case: Case) -> None:
    token = case.hook().client.poll_device_token(case.device_code, sleep=lambda _seconds: None)
    from docify_provider._core.config import reveal

    assert reveal(token.token).startswith("dfoa_")


#: Path id -> (set-up before the fault is injected, the call under test).
RUNNERS: dict[str, tuple[Callable[[Case], None] | None, Callable[[Case], None]]] = {
    "apps": (None, _apps),
    "describe": (None, _describe),
    "run": (None, _run),
    "events": (_start_long, _events),
    "form": (_pause, _form),
    "submit": (_pause, _submit),
    "stop": (_start_long, _stop),
    "device": (_login, _poll),
}


@pytest.fixture
def openapi_emulator(emu: DifyOpenAPIEmulator) -> DifyOpenAPIEmulator:
    """The cell's fresh ``emu`` (counters at zero) holding an expired token as well."""
    emu.sessions.issue(ACCOUNT_ID, -1.0, token=EXPIRED_TOKEN, device_label="lapsed")
    return emu


@pytest.mark.parametrize("cell", TESTED, ids=[c.id for c in TESTED])
def test_fault(
    cell: Cell, openapi_emulator: DifyOpenAPIEmulator, monkeypatch: pytest.MonkeyPatch, worker_error_streams: Any
) -> None:
    case = Case(openapi_emulator, monkeypatch, cell.injection(FAULTS), fault=cell.fault)
    setup, call = RUNNERS[cell.path]
    if setup is not None:
        setup(case)
    table.drive_cell(
        cell,
        case.inject,
        emulator=openapi_emulator,
        endpoint=PATHS[cell.path][1],
        tail=TAILS[cell.path],
        key=case.key,
        root=DifyOpenAPIError,
        call=lambda: call(case),
        check_error=lambda exc: _check_error(cell, exc, case.key),
    )
    if cell.recovery == REATTACHED:
        assert openapi_emulator.events_requests(ACCOUNT_TOKEN) >= 1, "a cut run stream is re-attached by run id"
    if cell.fault == "rejected_input":
        assert openapi_emulator.events_requests() == 0, "nothing re-attached"
        assert worker_error_streams(openapi_emulator) == ["client closed"], "the client closed the connection"


def _check_error(cell: Cell, exc: ProviderError, key: str) -> None:
    """What a user reads must name the cause and must not leak the token."""
    assert key not in str(exc) and ACCOUNT_TOKEN not in str(exc)
    if cell.fault.isdigit() and cell.path != "device" and not isinstance(exc, DifyOpenAPIOutcomeUnknownError):
        assert getattr(exc, "status_code", None) == int(cell.fault)
    if cell.fault in ("drop_before_response", "drop_after_start") and cell.path == "run":
        assert "not re-sent" in str(exc) or "never re-sent" in str(exc) or "not sent again" in str(exc), str(exc)
    if cell.path in ("submit", "device") and isinstance(exc, DifyOpenAPIOutcomeUnknownError):
        assert "run may" not in str(exc) and "not re-sent" in str(exc), "says what may have happened instead"
    if cell.fault in ("401", "token_expired"):
        # The connection is an AIRFLOW_CONN_ variable: the login for it, printing the variable's new value.
        assert "Log in again with `airflow-dify login --conn-id dify_openapi_fault_matrix" in str(exc), str(exc)
        assert "difyctl" not in str(exc) and getattr(exc, "status_code", None) == 401
    if cell.fault == "token_expired":
        assert getattr(exc, "code", None) == "token_expired" and "hint: Re-authenticate to continue" in str(exc)
    if cell.fault == "rejected_input":
        assert WORKER_MESSAGE in str(exc) and "not re-sent" in str(exc) and getattr(exc, "run_id", "?") is None
    if cell.fault == "tag_ignored":
        assert "tag='nightly'" in str(exc) and "select_apps" in str(exc)
    if cell.fault == "unknown_mode":
        assert "mode: 'workflows'" in str(exc)
    if cell.fault in ("failed_run", "error_event"):
        assert isinstance(exc, DifyOpenAPIRunFailedError)
