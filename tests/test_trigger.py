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

from airflow_helpers import new_dag, run_dag, run_trigger_for
from docify_provider.client import errors
from docify_provider.operators.docify import DocifyStreamScenarioOperator
from docify_provider.testing import FORBIDDEN_KEY, SUMMARY_KEY, Fault
from docify_provider.triggers.docify import DocifyStreamTrigger, error_from_event, error_to_event
from docify_provider.xcom import STREAM_MARKER_XCOM_KEY

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


def test_restarted_trigger_reports_outcome_unknown_instead_of_paying_again(docify_conns):
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    emu = docify_conns
    with new_dag("restart_guard") as dag:
        DocifyStreamScenarioOperator(
            task_id="stream", docify_conn_id="docify_summary", inputs=SUMMARY_INPUTS, deferrable=True
        )
    out = run_dag(dag)
    assert out.state("stream") == "success"
    assert emu.runs_started(SUMMARY_KEY) == 1
    session_id = out.xcom("stream")["session_id"]
    marker = out.xcom("stream", key=STREAM_MARKER_XCOM_KEY)
    assert marker["state"] == "sent" and marker["session_id"] == session_id

    # What the triggerer would re-create the trigger from: the row in the metadata DB.
    with create_session() as session:
        rows = [
            (row.encrypted_kwargs, row.kwargs)
            for row in session.scalars(select(Trigger).where(Trigger.classpath == CLASSPATH))
            if row.kwargs.get("dag_id") == out.dag_id
        ]
    ((stored, kwargs),) = rows
    assert SUMMARY_KEY not in stored and SUMMARY_KEY not in json.dumps(kwargs, default=str)
    assert kwargs["inputs"] == WIRE

    # A restart (twice): the marker is found, nothing is POSTed, the session id is reported.
    for _ in range(2):
        event = run_trigger_for(out, "stream", DocifyStreamTrigger(**kwargs))
        assert event.payload["status"] == "outcome_unknown"
        assert event.payload["session_id"] == session_id
        assert "not re-sent" in event.payload["message"] and "allow_resubmit=True" in event.payload["message"]
    assert emu.runs_started(SUMMARY_KEY) == 1
    exc = error_from_event(event.payload)
    assert isinstance(exc, errors.DocifyOutcomeUnknownError) and exc.session_id == session_id

    # As in the real triggerer: identity from the attached task instance, not from kwargs.
    bare = DocifyStreamTrigger(inputs=WIRE, docify_conn_id="docify_summary")
    bare.task_instance = out.ti("stream")
    assert run_trigger_for(out, "stream", bare).payload["status"] == "outcome_unknown"
    assert emu.runs_started(SUMMARY_KEY) == 1

    # Opting in pays again.
    event = run_trigger_for(out, "stream", DocifyStreamTrigger(**{**kwargs, "allow_resubmit": True}))
    assert event.payload["status"] == "success"
    assert event.payload["session_id"] != session_id
    assert emu.runs_started(SUMMARY_KEY) == 2


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
