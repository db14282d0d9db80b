"""``DifyWorkflowTrigger`` and ``DifyWorkflowRunTrigger``: events, serialization, restart guard, errors.

Triggers run for real: directly on an asyncio loop against the Dify emulator over 127.0.0.1, or
in-process the way ``dag.test()`` runs them (XCom markers go through the Execution API).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from airflow_helpers import needs_trigger_xcom_in_dag_test, new_dag, run_dag, run_trigger_for
from docify_provider.dify import errors
from docify_provider.events import error_from_event
from docify_provider.operators.dify import DifyStreamWorkflowOperator, run_from_record
from docify_provider.testing.dify import DISABLED_APP_KEY, HUMAN_INPUT_APP_KEY, TEXT_APP_KEY
from docify_provider.testing.faults import Fault
from docify_provider.triggers.dify import DifyWorkflowRunTrigger, DifyWorkflowTrigger
from docify_provider.xcom import DIFY_MARKER_XCOM_KEY

pytestmark = pytest.mark.timeout(60)

WIRE = {"topic": "Triggers hold streams", "tone": "casual"}
STREAM_CLASSPATH = "docify_provider.triggers.dify.DifyWorkflowTrigger"
RUN_CLASSPATH = "docify_provider.triggers.dify.DifyWorkflowRunTrigger"
ALL_KEYS = (TEXT_APP_KEY, DISABLED_APP_KEY, HUMAN_INPUT_APP_KEY)


async def _first_event(trigger: Any) -> Any:
    gen = trigger.run()
    try:
        return await anext(gen)
    finally:
        await gen.aclose()


def _no_key(value: Any) -> None:
    text = json.dumps(value, default=str)
    for secret in (*ALL_KEYS, "password", "api_key", "Authorization", "Bearer"):
        assert secret not in text


def _conn(monkeypatch: Any, emu: Any, conn_id: str, key: str) -> str:
    from airflow_helpers import conn_json

    extras = {"idle_timeout": 5, "connect_timeout": 2, "poll_interval": 0.1, "recovery_timeout": 1}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn_json(emu.base_url, key, "dify", **extras))
    return conn_id


# -- serialization ----------------------------------------------------------------------------------


def test_serialize_round_trips_without_secrets():
    trigger = DifyWorkflowTrigger(
        inputs=WIRE,
        dify_conn_id="dify_text",
        user="u1",
        files=[{"type": "image", "transfer_method": "remote_url", "url": "https://example.com/a.png"}],
        workflow_id="wf-1",
        allow_resubmit=True,
        workflow_run_id="run-1",
        dify_task_id="task-1",
        dag_id="d",
        task_id="t",
        run_id="r",
        map_index=2,
        try_number=3,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == STREAM_CLASSPATH
    assert DifyWorkflowTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs
    _no_key(kwargs)

    waiting = DifyWorkflowRunTrigger(
        workflow_run_id="run-1",
        dify_conn_id="dify_human",
        poll_interval=0.5,
        timeout=30,
        try_number=1,
        form_title="Review",
        form_expires_at="2030-01-01T00:00:00+00:00",
    )
    classpath, kwargs = waiting.serialize()
    assert classpath == RUN_CLASSPATH
    assert DifyWorkflowRunTrigger(**kwargs).serialize() == (classpath, kwargs)
    _no_key(kwargs)


# -- the stream trigger on an event loop ------------------------------------------------------------


async def test_stream_trigger_fires_one_success_event(dify_conns):
    emu = dify_conns
    event = await _first_event(DifyWorkflowTrigger(inputs=WIRE, dify_conn_id="dify_text", user="u1", try_number=1))
    payload = event.payload
    assert payload["status"] == "success" and payload["deferred_in_try"] == 1
    assert payload["workflow_run_id"] and payload["task_id"]
    run = run_from_record(payload["run"], emu.base_url)
    assert run.succeeded and run.workflow_run_id == payload["workflow_run_id"]
    assert run.outputs["text"].startswith("Casual notes on Triggers hold streams")
    assert run.usage["total_tokens"] and run.usage["currency"] == "USD"
    assert emu.runs_started(key=TEXT_APP_KEY, user="u1") == 1
    assert json.loads(json.dumps(dict(payload))) == dict(payload)
    _no_key(dict(payload))


async def test_stream_trigger_reattaches_after_a_cut(dify_conns):
    emu = dify_conns
    emu.inject(Fault("stream", "drop_mid_stream", after_events=2))
    event = await _first_event(DifyWorkflowTrigger(inputs=WIRE, dify_conn_id="dify_text", user="u1"))
    assert event.payload["status"] == "success"
    assert emu.runs_started(key=TEXT_APP_KEY) == 1


async def test_stream_trigger_attaches_to_a_given_run_without_posting(dify_conns):
    emu = dify_conns
    first = await _first_event(DifyWorkflowTrigger(inputs=WIRE, dify_conn_id="dify_text", user="u1"))
    run_id = first.payload["workflow_run_id"]
    again = await _first_event(
        DifyWorkflowTrigger(inputs=WIRE, dify_conn_id="dify_text", user="u1", workflow_run_id=run_id)
    )
    assert again.payload["status"] == "success" and again.payload["workflow_run_id"] == run_id
    assert (
        run_from_record(again.payload["run"], emu.base_url).outputs
        == run_from_record(first.payload["run"], emu.base_url).outputs
    )
    assert emu.runs_started(key=TEXT_APP_KEY) == 1


async def test_paused_run_fires_a_paused_event_naming_the_form(dify_conns):
    emu = dify_conns
    event = await _first_event(DifyWorkflowTrigger(inputs={"topic": "budget"}, dify_conn_id="dify_human", user="u1"))
    payload = event.payload
    assert payload["status"] == "paused"
    assert payload["form"]["title"] == "Review"
    assert [a["id"] for a in payload["form"]["actions"]] == ["approve", "reject"]
    assert payload["form"]["expiration_time"]
    assert emu.run(payload["workflow_run_id"]).status == "paused"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault("stream", "failed_run", message="model exploded"), errors.DifyRunFailedError),
        (Fault("stream", "error_event", message="quota gone"), errors.DifyRunFailedError),
        (Fault("stream", "status", status=400, message="bad input"), errors.DifyBadRequestError),
        # a 502 may hide a started run: the logs are searched (recovery_timeout 1 s here), none found
        (Fault("stream", "status", status=502), errors.DifyOutcomeUnknownError),
        (Fault("stream", "drop_before_response"), errors.DifyOutcomeUnknownError),
    ],
)
async def test_stream_failures_become_the_right_dify_errors(dify_conns, monkeypatch, fault, expected):
    emu = dify_conns
    _conn(monkeypatch, emu, "dify_text", TEXT_APP_KEY)  # recovery_timeout 1 s: the logs search ends soon
    emu.inject(fault)
    event = await _first_event(DifyWorkflowTrigger(inputs=WIRE, dify_conn_id="dify_text", user="u1"))
    payload = event.payload
    json.dumps(dict(payload))  # crosses the triggerer -> worker boundary as JSON
    assert payload["status"] == "error"
    exc = error_from_event(payload, root=errors.DifyError)
    assert isinstance(exc, expected), (type(exc), payload)
    assert str(exc) == payload["message"]
    _no_key(dict(payload))
    if expected is errors.DifyRunFailedError:
        assert exc.run_settled() and not exc.outcome_unknown
        assert payload["workflow_run_id"] and fault.message in str(exc)
    if expected is errors.DifyBadRequestError:
        assert exc.status_code == 400 and exc.run_settled()
        assert emu.runs_started() == 0
    if expected is errors.DifyOutcomeUnknownError:
        assert exc.outcome_unknown and not exc.run_settled()
        assert "not re-sent" in str(exc) and emu.runs_started() == 0


async def test_stream_cut_before_its_first_event_is_found_and_succeeds(dify_conns):
    """The run started but the stream died before saying its id: found in the logs, one run, success."""
    emu = dify_conns
    emu.inject(Fault("stream", "drop_mid_stream", after_events=0))
    event = await _first_event(DifyWorkflowTrigger(inputs=WIRE, dify_conn_id="dify_text", user="u1"))
    assert event.payload["status"] == "success", event.payload
    assert emu.runs_started(key=TEXT_APP_KEY) == 1


async def test_rejected_key_is_an_authentication_error(dify_conns, monkeypatch):
    conn = _conn(monkeypatch, dify_conns, "dify_disabled", DISABLED_APP_KEY)
    event = await _first_event(DifyWorkflowTrigger(inputs=WIRE, dify_conn_id=conn, user="u1"))
    exc = error_from_event(event.payload, root=errors.DifyError)
    assert isinstance(exc, errors.DifyAuthenticationError) and exc.status_code == 403
    assert dify_conns.runs_started() == 0
    _no_key(dict(event.payload))


# -- the run trigger ----------------------------------------------------------------------------------


def _started_run(emu: Any, conn_id: str, inputs: dict[str, Any]) -> str:
    from docify_provider.hooks.dify import DifyHook

    hook = DifyHook(dify_conn_id=conn_id)
    try:
        events = hook.client.stream_workflow(inputs, user="u1")
        first = next(iter(events))
        events.close()  # type: ignore[attr-defined]
        return str(first.workflow_run_id)
    finally:
        hook.close()


async def test_run_trigger_success_failure_timeout_and_expired_form(dify_conns, monkeypatch):
    emu = dify_conns
    conn = _conn(monkeypatch, emu, "dify_text_fast", TEXT_APP_KEY)
    ok = _started_run(emu, conn, {"topic": "polled"})
    event = await _first_event(DifyWorkflowRunTrigger(workflow_run_id=ok, dify_conn_id=conn, poll_interval=0.05))
    assert event.payload["status"] == "success" and event.payload["workflow_run_id"] == ok
    assert run_from_record(event.payload["run"], emu.base_url).succeeded

    emu.inject(Fault("stream", "failed_run", message="broken model"))
    failed = _started_run(emu, conn, {"topic": "polled"})
    event = await _first_event(DifyWorkflowRunTrigger(workflow_run_id=failed, dify_conn_id=conn, poll_interval=0.05))
    exc = error_from_event(event.payload, root=errors.DifyError)
    assert isinstance(exc, errors.DifyRunFailedError) and "broken model" in str(exc)

    paused = _started_run(emu, "dify_human", {"topic": "t"})
    emu.wait_run_status(paused, "paused", timeout=10)
    event = await _first_event(
        DifyWorkflowRunTrigger(workflow_run_id=paused, dify_conn_id="dify_human", poll_interval=0.05, timeout=0.3)
    )
    assert event.payload["status"] == "timeout" and "had not ended after 0.3s" in event.payload["message"]

    event = await _first_event(
        DifyWorkflowRunTrigger(
            workflow_run_id=paused,
            dify_conn_id="dify_human",
            poll_interval=0.05,
            form_title="Review",
            form_expires_at="2020-01-01T00:00:00+00:00",
        )
    )
    exc = error_from_event(event.payload, root=errors.DifyError)
    assert isinstance(exc, errors.DifyPausedError) and exc.run_id == paused
    assert "the form 'Review' expired at 2020-01-01T00:00:00+00:00 without an answer" in str(exc)
    assert emu.run(paused).status == "paused"
    for value in (event.payload,):
        _no_key(dict(value))


# -- the restart guard: a re-created trigger re-attaches by the run id its marker holds ----------------


def _one_deferred_run(emu: Any, name: str) -> Any:
    with new_dag(name) as dag:
        DifyStreamWorkflowOperator(task_id="stream", dify_conn_id="dify_text", inputs=WIRE, deferrable=True)
    out = run_dag(dag)
    assert out.state("stream") == "success"
    assert emu.runs_started(key=TEXT_APP_KEY) == 1
    return out


def _stored_kwargs(out: Any) -> dict[str, Any]:
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = [
            (row.encrypted_kwargs, dict(row.kwargs))
            for row in session.scalars(select(Trigger).where(Trigger.classpath == STREAM_CLASSPATH))
            if row.kwargs.get("dag_id") == out.dag_id
        ]
    ((stored, kwargs),) = rows
    assert TEXT_APP_KEY not in stored
    _no_key(kwargs)
    return kwargs


@needs_trigger_xcom_in_dag_test
def test_recreated_trigger_reattaches_by_the_marker_instead_of_posting(dify_conns, capfd):
    from airflow.models.xcom import XComModel

    emu = dify_conns
    out = _one_deferred_run(emu, "dify_restart_guard")
    xcom = out.xcom("stream")
    marker = out.xcom("stream", key=DIFY_MARKER_XCOM_KEY)
    assert marker["state"] == "sent" and marker["sent"] is True
    assert marker["workflow_run_id"] == xcom["workflow_run_id"] and marker["task_id"] == xcom["task_id"]
    assert "re-attaches to workflow_run_id" in marker["meaning"]
    kwargs = _stored_kwargs(out)
    assert kwargs["inputs"] == WIRE and kwargs["workflow_run_id"] is None

    # A triggerer restart (twice): the marker's run id is re-attached to; nothing is POSTed.
    for _ in range(2):
        event = run_trigger_for(out, "stream", DifyWorkflowTrigger(**kwargs))
        assert event.payload["status"] == "success"
        assert event.payload["workflow_run_id"] == xcom["workflow_run_id"]
        _no_key(dict(event.payload))
    assert emu.runs_started(key=TEXT_APP_KEY) == 1

    # As in the real triggerer: identity from the attached task instance, not from kwargs.
    bare = DifyWorkflowTrigger(inputs=WIRE, dify_conn_id="dify_text", user=kwargs["user"])
    bare.task_instance = out.ti("stream")
    assert run_trigger_for(out, "stream", bare).payload["workflow_run_id"] == xcom["workflow_run_id"]
    assert emu.runs_started(key=TEXT_APP_KEY) == 1

    # A marker that says "sent" without a run id: outcome unknown, unless allow_resubmit.
    ident = {"dag_id": out.dag_id, "task_id": "stream", "run_id": out.run_id, "map_index": -1}
    # As the Execution API stores a task's XCom (3.1+ stores it as JSON; 3.0's set() encodes it itself).
    raw = {"serialize": False} if "serialize" in inspect.signature(XComModel.set).parameters else {}
    XComModel.set(DIFY_MARKER_XCOM_KEY, {"state": "sent", "sent_at": "2026-01-01T00:00:00+00:00"}, **raw, **ident)
    assert out.xcom("stream", key=DIFY_MARKER_XCOM_KEY)["state"] == "sent"
    event = run_trigger_for(out, "stream", DifyWorkflowTrigger(**kwargs))
    assert event.payload["status"] == "outcome_unknown"
    assert "not re-sent" in event.payload["message"] and "allow_resubmit=True" in event.payload["message"]
    assert isinstance(error_from_event(event.payload, root=errors.DifyError), errors.DifyOutcomeUnknownError)
    assert emu.runs_started(key=TEXT_APP_KEY) == 1
    capfd.readouterr()
    event = run_trigger_for(out, "stream", DifyWorkflowTrigger(**{**kwargs, "allow_resubmit": True}))
    assert event.payload["status"] == "success" and event.payload["workflow_run_id"] != xcom["workflow_run_id"]
    assert emu.runs_started(key=TEXT_APP_KEY) == 2
    # The re-send is said, as Docify's trigger says it (Dify's used to re-send silently).
    logged = " ".join(capfd.readouterr().out.split())
    assert "allow_resubmit=True, so a new run is sent (the earlier one may also have been billed)" in logged


# -- on_kill: the user ended the deferred task (Airflow 3.3 calls it on mark failed / clear) -------------


async def test_on_kill_stops_the_dify_task_and_reads_what_became_of_it(dify_conns, caplog):
    import asyncio

    from docify_provider.testing.dify import LONG_APP_KEY

    emu = dify_conns
    trigger = DifyWorkflowTrigger(inputs={"seconds": 30}, dify_conn_id="dify_long", user="u-kill")
    running = asyncio.ensure_future(_first_event(trigger))
    for _ in range(200):  # until the trigger has seen workflow_started (it then knows the task id)
        if any(run.task_id for run in trigger._following):
            break
        await asyncio.sleep(0.05)
    (live,) = trigger._following
    assert live.task_id, "the stream never named its Dify task"
    running.cancel()  # what the triggerer does first, then it awaits on_kill()
    with pytest.raises(asyncio.CancelledError):
        await running
    await trigger.on_kill()

    run_id = live.run_id
    assert emu.stop_requests(key=LONG_APP_KEY, user="u-kill") == 1
    assert emu.run(run_id).status == "stopped"
    assert emu.runs_started(key=LONG_APP_KEY) == 1
    # Killed before Dify named the task: nothing to stop, and it says so.
    idle = DifyWorkflowTrigger(inputs={"seconds": 1}, dify_conn_id="dify_long", user="u-kill")
    await idle.on_kill()
    assert emu.stop_requests(key=LONG_APP_KEY) == 1
