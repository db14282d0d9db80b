"""``DocifyStreamTrigger``: serialization, restart guard, error events, cancellation.

Triggers run for real: in-process the way ``dag.test()`` runs them (with Airflow's supervisor
comms, so XCom markers really go through the Execution API), or directly on an asyncio loop
against the emulator over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import psutil
import pytest

from airflow_helpers import needs_trigger_xcom_in_dag_test, new_dag, run_dag, run_trigger_for, set_xcom
from docify_provider.docify import errors
from docify_provider.operators.docify import DocifyStreamScenarioOperator
from docify_provider.testing import FORBIDDEN_KEY, SUMMARY_KEY, Fault
from docify_provider.triggers.docify import DocifyStreamTrigger, error_from_event, error_to_event
from docify_provider.xcom import LEGACY_STREAM_MARKER_XCOM_KEY, STREAM_MARKER_XCOM_KEY

pytestmark = pytest.mark.timeout(120)

SUMMARY_INPUTS = {"text": "Triggers hold streams. Workers do not.", "language": "en"}
WIRE = {"text": {"text": "Triggers hold streams. Workers do not."}, "language": {"text": "en"}}
CLASSPATH = "docify_provider.triggers.docify.DocifyStreamTrigger"


async def _first_event(trigger: DocifyStreamTrigger) -> Any:
    gen = trigger.run()
    try:
        return await anext(gen)
    finally:
        await gen.aclose()


def test_serialize_round_trips_without_secrets():
    trigger = DocifyStreamTrigger(
        inputs=WIRE,
        docify_conn_id="docify_summary",
        user="u1",
        additional_info={"source": "test"},
        allow_resubmit=True,
        idle_timeout=12.5,
        dag_id="d",
        task_id="t",
        run_id="r",
        map_index=3,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    again = DocifyStreamTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    text = json.dumps(kwargs)
    for secret in (SUMMARY_KEY, "password", "api_key", "Authorization"):
        assert secret not in text


def _one_deferred_summary_run(emu: Any, name: str) -> Any:
    """A deferred summary stream that succeeded with one paid run; its task id is ``stream``."""
    with new_dag(name) as dag:
        DocifyStreamScenarioOperator(
            task_id="stream", docify_conn_id="docify_summary", inputs=SUMMARY_INPUTS, deferrable=True
        )
    out = run_dag(dag)
    assert out.state("stream") == "success"
    assert emu.runs_started(SUMMARY_KEY) == 1
    return out


@needs_trigger_xcom_in_dag_test
def test_marker_of_an_older_build_is_still_honoured(docify_conns):
    """A task deferred (or a triggerer that sent its run) under a build that used the old key."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    emu = docify_conns
    out = _one_deferred_summary_run(emu, "legacy_marker")
    ident = {"dag_id": out.dag_id, "task_id": "stream", "run_id": out.run_id, "map_index": -1}

    def markers(new: Any, old: Any) -> None:
        with create_session() as session:
            session.execute(
                delete(XComModel).where(
                    XComModel.dag_id == out.dag_id,
                    XComModel.key.in_([STREAM_MARKER_XCOM_KEY, LEGACY_STREAM_MARKER_XCOM_KEY]),
                )
            )
        for key, value in ((STREAM_MARKER_XCOM_KEY, new), (LEGACY_STREAM_MARKER_XCOM_KEY, old)):
            if value is not None:
                set_xcom(key, value, **ident)

    def fire() -> Any:
        return run_trigger_for(
            out, "stream", DocifyStreamTrigger(inputs=WIRE, docify_conn_id="docify_summary", **ident)
        )

    old_sent = {"state": "sent", "sent_at": "2026-01-01T00:00:00+00:00", "session_id": "session-of-old-build"}
    # Deferred and sent under the old build. (A task deferred by a new worker carries the new key,
    # and then the old one is not read: Airflow would log each missing XCom at error level.)
    markers(None, old_sent)
    event = fire()
    assert event.payload["status"] == "outcome_unknown"
    assert event.payload["session_id"] == "session-of-old-build"
    assert emu.runs_started(SUMMARY_KEY) == 1

    # Deferred under the old build, nothing sent yet: the run goes ahead, guarded under the new key.
    markers(None, {"state": "deferred", "deferred_at": "2026-01-01T00:00:00+00:00"})
    assert fire().payload["status"] == "success"
    assert emu.runs_started(SUMMARY_KEY) == 2
    assert out.xcom("stream", key=STREAM_MARKER_XCOM_KEY)["state"] == "sent"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault("stream", "drop_mid_stream", after_events=2), errors.DocifyOutcomeUnknownError),
        (Fault("stream", "end_without_complete", after_events=4), errors.DocifyStreamIncompleteError),
        (Fault("stream", "failed_run", message="Bad scan"), errors.DocifyRunFailedError),
        (Fault("stream", "error_event", message="Unsupported format"), errors.DocifyRunFailedError),
        (Fault("stream", "status", status=400, message="bad input"), errors.DocifyBadRequestError),
    ],
)
async def test_stream_failures_become_typed_error_events(emulator, docify_conn, fault, expected):
    conn_id = docify_conn(SUMMARY_KEY)
    emulator.inject(fault)
    event = await _first_event(DocifyStreamTrigger(inputs=WIRE, docify_conn_id=conn_id))

    payload = event.payload
    json.dumps(payload)  # crosses the triggerer -> worker boundary as JSON
    assert payload["status"] == "error"
    exc = error_from_event(payload)
    assert type(exc) is expected
    assert str(exc) == payload["message"]
    if expected is not errors.DocifyBadRequestError:
        assert payload["session_id"] and exc.session_id == payload["session_id"]
    if fault.kind == "failed_run":
        assert exc.result["errorMessage"] == "Bad scan" and exc.result["isSuccess"] is False
    if fault.kind == "status":
        assert exc.status_code == 400 and emulator.runs_started() == 0


@pytest.mark.airflow_line("a connection read inside the triggerer's event loop (compat.mask_secret_once)")
async def test_rejected_key_is_an_authentication_error(emulator, docify_conn):
    conn_id = docify_conn(FORBIDDEN_KEY)
    event = await _first_event(DocifyStreamTrigger(inputs=WIRE, docify_conn_id=conn_id))
    exc = error_from_event(event.payload)
    assert isinstance(exc, errors.DocifyAuthenticationError) and exc.status_code == 403
    assert FORBIDDEN_KEY not in json.dumps(event.payload)


def _client_connections(port: int) -> int:
    conns = psutil.Process().net_connections(kind="tcp")
    return sum(1 for c in conns if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


async def test_cancelled_trigger_closes_its_stream(emulator, docify_conn):
    conn_id = docify_conn(SUMMARY_KEY)  # idle_timeout 1 s in the connection...
    emulator.inject(Fault("stream", "slow_events", interval=30))
    # ...overridden by the trigger, so only cancellation can end this stream.
    trigger = DocifyStreamTrigger(inputs=WIRE, docify_conn_id=conn_id, idle_timeout=60)
    task = asyncio.create_task(_first_event(trigger))
    deadline = time.monotonic() + 10
    while not (emulator.runs_started(SUMMARY_KEY) == 1 and _client_connections(emulator.port) == 1):
        assert time.monotonic() < deadline, "stream never started"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # past the connection's idle_timeout: the override holds the stream
    assert not task.done()

    task.cancel()  # what the triggerer does on on_kill / execution_timeout
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while _client_connections(emulator.port):
        assert time.monotonic() < deadline, "the HTTP connection was left open"
        await asyncio.sleep(0.05)
    assert emulator.runs_completed(SUMMARY_KEY) == 0


def test_error_events_round_trip_every_attribute():
    cases: list[BaseException] = [
        errors.DocifyInputError(["a is missing", "b is too long"]),
        errors.DocifyRateLimitedError(
            "slow down", status_code=429, endpoint="POST /v1/scenario/run", server_message="x", retry_after=3.0
        ),
        errors.DocifyTransportError("refused", endpoint="POST /v1/scenario/run", request_sent=False),
        errors.DocifyStreamIncompleteError("cut", session_id="s1", events_seen=["START", "TEXT"]),
    ]
    for original in cases:
        payload = error_to_event(original)
        rebuilt = error_from_event(json.loads(json.dumps(payload)))
        assert type(rebuilt) is type(original)
        assert str(rebuilt) == str(original)
        for key, value in vars(original).items():
            assert getattr(rebuilt, key) == value, key

    # Not ours, after the request may have gone out: the outcome is unknown.
    rebuilt = error_from_event(error_to_event(RuntimeError("boom"), session_id="s9"))
    assert isinstance(rebuilt, errors.DocifyOutcomeUnknownError) and rebuilt.session_id == "s9"
    assert type(error_from_event(error_to_event(RuntimeError("boom"), posted=False))) is errors.DocifyError
    assert type(error_from_event({"status": "error", "error_type": "SystemExit", "message": "m"})) is errors.DocifyError


# -- the event as the triggerer logs it and hands it on ----------------------------------------------


class _Lines:
    """A structlog "logger" keeping what the final renderer produced."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def msg(self, message: str) -> None:
        self.lines.append(message)

    info = debug = warning = error = exception = msg


def _json_log_processors() -> list[Any]:
    """The processors that render a triggerer log line as JSON (as the task log stores it)."""
    import structlog

    try:  # Airflow 3.2+
        from airflow._shared.logging.structlog import structlog_processors
    except ImportError:  # Airflow 3.0 / 3.1 render the same way: msgspec JSON, repr() for objects
        return [structlog.processors.TimeStamper(fmt="iso"), structlog.processors.JSONRenderer()]
    shared, renderer, _ = structlog_processors(json_output=True)
    return [*shared, renderer]


async def _fire_in_triggerer(trigger: DocifyStreamTrigger) -> tuple[Any, Any, list[str]]:
    """Run ``trigger`` through Airflow's own ``TriggerRunner.run_trigger``; returns the queued
    entry (for the supervisor), its event and the rendered log lines."""
    import structlog
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    sink = _Lines()
    runner = TriggerRunner()
    runner.log = structlog.wrap_logger(
        sink, processors=_json_log_processors(), wrapper_class=structlog.make_filtering_bound_logger(0)
    )
    runner.triggers[1] = {"task": None, "is_watcher": False, "name": "docify-stream", "events": 0}  # type: ignore[typeddict-item]
    await runner.run_trigger(1, trigger)
    [entry] = list(runner.events)  # (trigger_id, event, ...): a tuple on 3.0, a NamedTuple later
    return entry, entry[1], sink.lines


def _through_supervisor_and_db(entry: Any) -> dict[str, Any]:
    """What ``execute_complete`` gets: the runner -> supervisor frame (msgpack), then the task
    instance's ``next_kwargs`` as ``handle_event_submit`` stores them and the worker reads them."""
    import msgspec
    from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor, messages
    from airflow.sdk.execution_time.comms import _RequestFrame

    msg = messages.TriggerStateChanges(events=[entry])
    wire = _RequestFrame(id=1, body=msg.model_dump()).as_bytes()
    frame = msgspec.msgpack.Decoder(_RequestFrame).decode(wire[4:])
    received = TriggerRunnerSupervisor.decoder.validate_python(frame.body).events[0][1]
    try:  # Airflow 3.3: serde-encoded next_kwargs
        from airflow.models.trigger import _decode_next_kwargs
        from airflow.sdk.serde import serialize
    except ImportError:  # earlier 3.x: BaseSerialization (the column's ExtendedJSON)
        from airflow.serialization.serialized_objects import BaseSerialization

        stored = json.loads(json.dumps(BaseSerialization.serialize({"event": received.payload})))
        return BaseSerialization.deserialize(stored)["event"]
    stored = json.loads(json.dumps(serialize({"event": received.payload})))  # the DB column is JSON
    return _decode_next_kwargs(stored)["event"]


@pytest.mark.airflow_line("the triggerer's log rendering differs by line")
async def test_fired_event_is_logged_short_and_arrives_whole(emulator, docify_conn, make_client, invoice_png):
    from docify_provider.testing import INVOICE_KEY

    conn_id = docify_conn(INVOICE_KEY)
    uploaded = make_client(INVOICE_KEY).upload_file(invoice_png)
    trigger = DocifyStreamTrigger(inputs={"invoice_image": {"files": [uploaded.to_input()]}}, docify_conn_id=conn_id)

    entry, event, lines = await _fire_in_triggerer(trigger)

    result = event.payload["result"]
    assert event.payload["status"] == "success" and result["files"] and result["files"][0]["fileUrl"]
    full = len(json.dumps(result))
    [fired] = [json.loads(line) for line in lines if '"Trigger fired event"' in line]
    logged = fired["result"]
    assert logged.startswith("TriggerEvent<{'status': 'success', 'result': <Docify run ")
    assert f"{result['runId']}: isSuccess=True, 1 file(s), {full} chars" in logged
    assert event.payload["session_id"] in logged
    assert len(logged) < 250 < full  # the whole reply was ~700 characters of this one line
    assert result["files"][0]["fileUrl"] not in "\n".join(lines)

    # Nothing of the result was dropped on the way to execute_complete.
    delivered = _through_supervisor_and_db(entry)
    assert type(delivered) is dict
    assert delivered == {
        "status": "success",
        "result": result,
        "session_id": event.payload["session_id"],
        "deferred_in_try": None,  # the trigger was built without the try that deferred
    }
    assert delivered == json.loads(json.dumps(dict(event.payload)))
