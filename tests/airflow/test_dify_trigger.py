"""``DifyWorkflowTrigger`` and ``DifyWorkflowRunTrigger``: events, serialization, restart guard, errors.

Triggers run for real: directly on an asyncio loop against the Dify emulator over 127.0.0.1, or
in-process the way ``dag.test()`` runs them (XCom markers go through the Execution API).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from docify_provider.dify import errors
from docify_provider.events import error_from_event
from docify_provider.operators.dify import run_from_record
from docify_provider.testing.dify import DISABLED_APP_KEY, HUMAN_INPUT_APP_KEY, TEXT_APP_KEY
from docify_provider.testing.faults import Fault
from docify_provider.triggers.dify import DifyWorkflowRunTrigger, DifyWorkflowTrigger

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


@pytest.mark.airflow_line("a connection read inside the triggerer's event loop (compat.mask_secret_once)")
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
    assert "the form 'Review' expired at 1 Jan 2020, 00:00 UTC without an answer" in str(exc)
    assert emu.run(paused).status == "paused"
    for value in (event.payload,):
        _no_key(dict(value))


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
