"""The provider against the Service API as the newest Dify server behaves (Part C of
``shared/reference/dify-server-behaviour.md``), through the emulator's default ``"current"``
profile over 127.0.0.1. Nothing of ours is mocked; the emulator's counters say how many run
requests went out and how many runs were started.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from airflow_helpers import console_text, new_dag, run_dag
from docify_provider.dify.client import DifyClient
from docify_provider.dify.config import DifyClientConfig
from docify_provider.dify.errors import (
    DifyBadRequestError,
    DifyRateLimitedError,
    DifyRunFailedError,
)
from docify_provider.dify.models import FormRequest, WorkflowEvent, WorkflowRun
from docify_provider.dify.stream import DifyEventTracker
from docify_provider.testing.dify import HUMAN_INPUT_APP_KEY, LONG_APP_KEY, TEXT_APP_KEY, DifyEmulator
from docify_provider.testing.faults import Fault

TEXT = {"topic": "current Dify", "tone": "formal"}
USER = "current-user"
#: Long enough that a client waiting for the server to close would be caught.
IDLE_CLOSE = 20.0

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.emulator(ping_interval=0.1, event_interval=0.002, idle_close_seconds=IDLE_CLOSE),
]


def client(emu: DifyEmulator, key: str = TEXT_APP_KEY, **extra: Any) -> DifyClient:
    options = {"idle_timeout": 5.0, "read_timeout": 10.0, "max_retries": 2, "poll_interval": 0.05, **extra}
    return DifyClient(DifyClientConfig(base_url=emu.base_url, api_key=key, **options))


# C1: the worker's error frame ends the run at once ------------------------------------------------
def test_worker_error_frame_ends_the_stream_at_once(emu: DifyEmulator, requests_to, worker_error_streams) -> None:
    """A real rejected input (no ``topic``): 200, ping, error frame; the client closes at the frame."""
    started = time.monotonic()
    with client(emu) as dify, pytest.raises(DifyRunFailedError) as info:
        list(dify.stream_workflow({"tone": "formal"}, user=USER))
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"the client waited {elapsed:.1f}s: it must not wait for the {IDLE_CLOSE:g}s idle close"
    message = str(info.value)
    assert "topic is required in input form" in message and "before it started" in message
    assert info.value.error == "topic is required in input form"
    assert TEXT_APP_KEY not in message
    assert len(requests_to(emu, "stream", 1)) == 1 and emu.runs_started() == 0
    assert requests_to(emu, "run_detail") == [] and requests_to(emu, "logs") == [], "nothing to recover: no run exists"
    assert worker_error_streams(emu) == ["client closed"], "the client closed the connection, not the idle close"


def test_worker_error_frame_fails_the_streaming_operator(dify_conns: DifyEmulator, capfd: Any, requests_to) -> None:
    from docify_provider.operators.dify import DifyStreamWorkflowOperator

    emu = dify_conns
    emu.idle_close_seconds = IDLE_CLOSE
    emu.inject(Fault("stream", "rejected_input", message="tone must be one of formal, casual"))
    with new_dag("dify_worker_error") as dag:
        DifyStreamWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT, validate=False)
    started = time.monotonic()
    outcome = run_dag(dag)
    elapsed = time.monotonic() - started
    text = console_text(capfd)
    assert outcome.state("run") == "failed"
    assert "tone must be one of formal, casual" in text and "DifyRunFailedError" in text
    assert elapsed < IDLE_CLOSE, "the task ended at the error frame, not at the server's idle close"
    assert len(requests_to(emu, "stream", 1)) == 1 and emu.runs_started() == 0


def test_worker_error_frame_fails_the_deferred_trigger(dify_conns: DifyEmulator, requests_to) -> None:
    from fault_matrix_table import run_trigger

    from docify_provider.dify.errors import DifyError
    from docify_provider.events import error_from_event
    from docify_provider.triggers.dify import DifyWorkflowTrigger

    emu = dify_conns
    emu.idle_close_seconds = IDLE_CLOSE
    emu.inject(Fault("stream", "rejected_input", message="topic is too long"))
    started = time.monotonic()
    event = run_trigger(DifyWorkflowTrigger(inputs=TEXT, dify_conn_id="dify_text", user=USER))
    assert time.monotonic() - started < 5
    assert event.payload["status"] != "success"
    error = error_from_event(event.payload, root=DifyError)
    assert isinstance(error, DifyRunFailedError) and "topic is too long" in str(error)
    assert len(requests_to(emu, "stream", 1)) == 1 and emu.runs_started() == 0


# C2: blocking pipeline errors -------------------------------------------------------------------
@pytest.mark.parametrize(
    "code",
    ["provider_not_initialize", "provider_quota_exceeded", "model_currently_not_support", "completion_request_error"],
)
def test_blocking_provider_error_is_a_clear_bad_request(emu: DifyEmulator, code: str, requests_to) -> None:
    emu.inject(Fault("run", "error_event", code=code, message="Provider said no"))
    with client(emu) as dify, pytest.raises(DifyBadRequestError) as info:
        dify.run_workflow(TEXT, user=USER)
    assert info.value.code == code and info.value.status_code == 400
    assert code in str(info.value) and "Provider said no" in str(info.value) and "started" in str(info.value)
    assert info.value.permanent
    assert len(requests_to(emu, "run", 1)) == 1 and emu.runs_started() == 1


def test_blocking_rate_limit_error_is_a_failed_run_not_a_429(emu: DifyEmulator, requests_to) -> None:
    """``rate_limit_error`` is the model provider's limit hit by a started run: never "429, nothing started"."""
    emu.inject(Fault("run", "error_event", code="rate_limit_error", message="Rate Limit Error"))
    with client(emu) as dify, pytest.raises(DifyRunFailedError) as info:
        dify.run_workflow(TEXT, user=USER)
    exc = info.value
    assert not isinstance(exc, DifyRateLimitedError)
    assert exc.code == "rate_limit_error" and exc.status_code == 429 and "Rate Limit Error" in str(exc)
    assert exc.run_settled() and not exc.outcome_unknown
    assert len(requests_to(emu, "run", 1)) == 1 and emu.runs_started() == 1


def test_blocking_rate_limit_error_is_not_retried_as_a_rate_limit() -> None:
    pytest.importorskip("airflow.sdk.definitions.retry_policy")
    from docify_provider.policies import DocifyRetryPolicy

    with DifyEmulator(event_interval=0.002) as emu:
        emu.inject(Fault("run", "error_event", code="rate_limit_error", message="Rate Limit Error"))
        with client(emu) as dify, pytest.raises(DifyRunFailedError) as info:
            dify.run_workflow(TEXT, user=USER)
    decision = DocifyRetryPolicy().evaluate(info.value, 1, 3)
    assert "rate limit" not in str(getattr(decision, "reason", "") or "").lower()
    # a plain 429 (Dify's own app limit, nothing started) still is one
    with DifyEmulator(event_interval=0.002) as emu:
        emu.inject(Fault("run", "status", status=429, code="too_many_requests"))
        with client(emu) as dify, pytest.raises(DifyRateLimitedError):
            dify.run_workflow(TEXT, user=USER)


# C3: re-attach held open; the finished-run frame's task id -------------------------------------------
def test_reattach_across_a_pause_ends_at_workflow_finished(emu: DifyEmulator) -> None:
    """With ``continue_on_pause`` the server keeps the body open after ``workflow_finished``."""
    import threading

    def answer_once_attached() -> None:  # as a person would, while the client follows the paused run
        deadline = time.monotonic() + 10
        while emu.events_requests() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        emu.submit_form(emu.form_token(paused.workflow_run_id), "approve", {"comment": "fine"})

    with client(emu, HUMAN_INPUT_APP_KEY) as dify:
        paused = dify.run_workflow({"topic": "budget"}, user=USER)
        assert paused.paused
        answerer = threading.Thread(target=answer_once_attached)
        answerer.start()
        started = time.monotonic()
        names = [e.event for e in dify.attach(paused.workflow_run_id, user=USER, continue_on_pause=True)]
        elapsed = time.monotonic() - started
    answerer.join(5)
    assert names[-1] == "workflow_finished" and "workflow_paused" in names, names
    assert elapsed < 5, f"attach took {elapsed:.1f}s: it must end at workflow_finished, not at the idle close"
    assert emu.run(paused.workflow_run_id).status == "succeeded"


def test_finished_run_frame_task_id_is_not_taken_for_a_task_id(emu: DifyEmulator) -> None:
    with client(emu, LONG_APP_KEY) as dify:
        first = next(iter(dify.stream_workflow({"seconds": 0.1, "steps": 1}, user=USER)))
        task_id, run_id = first.task_id, first.workflow_run_id
        assert task_id and run_id and task_id != run_id
        emu.wait_run_finished(run_id)
        with httpx.Client(timeout=10) as raw:
            answer = raw.get(
                f"{emu.base_url}/workflow/{run_id}/events",
                params={"user": USER},
                headers={"Authorization": f"Bearer {LONG_APP_KEY}"},
            )
        frame = json.loads(answer.text.split("data: ", 1)[1])
        assert frame["task_id"] == run_id, "the current server puts the run id there (C3)"
        event = WorkflowEvent.from_api(frame)
        assert event.task_id is None and WorkflowRun.from_event(frame).task_id is None
        tracker = DifyEventTracker("events", run_id=run_id, task_id=task_id)
        tracker.accept(event)
        assert tracker.task_id == task_id and tracker.result is not None and tracker.result.task_id == task_id
        run = dify.stop_task(str(tracker.task_id), user=USER, workflow_run_id=run_id)
    assert run is not None and run.task_id == task_id
    stops = [r.path for r in emu.requests if r.endpoint == "stop"]
    assert stops == [f"/v1/workflows/tasks/{task_id}/stop"], "never a stop with the run id as task id"


# C4: TYPE and type ---------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["current", "documented"])
def test_paused_form_found_under_either_reason_key(profile: str) -> None:
    from docify_provider.operators.dify import paused_form

    with DifyEmulator(event_interval=0.002, server_profile=profile) as emu, client(emu, HUMAN_INPUT_APP_KEY) as dify:
        run = dify.run_workflow({"topic": "x"}, user=USER)
        events = list(dify.stream_workflow({"topic": "y"}, user=USER))
        token = emu.form_token(run.workflow_run_id)
    assert run.paused and paused_form(run)["form_token"] == token
    (form,) = events[-1].forms
    assert form.kind == "human_input_required" and form.form_token


def test_reasons_of_another_kind_are_not_forms() -> None:
    reasons = [{"TYPE": "scheduled_pause"}, {"TYPE": "human_input_required", "form_token": "t1"}, {"form_token": "t2"}]
    event = WorkflowEvent.from_api({"event": "workflow_paused", "workflow_run_id": "r", "data": {"reasons": reasons}})
    assert [f.form_token for f in event.forms] == ["t1", "t2"]
    assert FormRequest.from_api({"type": "human_input_required"}).kind == "human_input_required"


# C6: run detail inputs, stop of a paused run ------------------------------------------------------------
@pytest.mark.parametrize("profile", ["current", "documented"])
def test_run_detail_inputs_string_or_object(profile: str) -> None:
    with DifyEmulator(event_interval=0.002, server_profile=profile) as emu, client(emu) as dify:
        run = dify.run_workflow(TEXT, user=USER)
        detail = dify.get_workflow_run(run.workflow_run_id)
        raw_inputs = detail.raw["inputs"]
    assert isinstance(raw_inputs, str) == (profile == "current")
    assert detail.inputs == TEXT


def test_lost_blocking_answer_is_found_with_string_inputs(emu: DifyEmulator, requests_to) -> None:
    """Recovery confirms a candidate run by its detail's inputs, now a JSON string."""
    emu.inject(Fault("run", "drop_before_response", run_started=True))
    with client(emu, recovery_timeout=3.0) as dify:
        run = dify.run_workflow(TEXT, user=USER)
    assert run.status == "succeeded" and emu.runs_started() == 1 and len(requests_to(emu, "run", 1)) == 1


def test_stop_of_a_paused_run_is_bounded_and_says_what_it_saw(dify_conns: DifyEmulator, capfd: Any) -> None:
    from docify_provider.operators.dify import DifyStreamWorkflowOperator

    emu = dify_conns
    with client(emu, HUMAN_INPUT_APP_KEY) as dify:
        paused = dify.run_workflow({"topic": "x"}, user=USER)
    operator = DifyStreamWorkflowOperator(task_id="t", dify_conn_id="dify_human", inputs={"topic": "x"})
    operator._running = (paused.task_id, paused.workflow_run_id, USER)
    started = time.monotonic()
    operator._stop_running("execution_timeout")
    elapsed = time.monotonic() - started
    assert elapsed < 10, "the stop reads the status a bounded number of times, never waits for 'stopped'"
    assert emu.stop_requests() == 1 and emu.run(paused.workflow_run_id).status == "paused"
    assert "still paused (status seen: paused)" in console_text(capfd)


def test_blocking_operator_names_the_provider_rate_limit(dify_conns: DifyEmulator, capfd: Any, requests_to) -> None:
    from docify_provider.operators.dify import DifyRunWorkflowOperator

    emu = dify_conns
    emu.inject(Fault("run", "error_event", code="rate_limit_error", message="Rate Limit Error"))
    with new_dag("dify_provider_rate_limit") as dag:
        DifyRunWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT, validate=False)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("run") == "failed"
    assert "DifyRunFailedError" in text and "rate_limit_error" in text and "not retried as one" in text
    assert "DifyRateLimitedError" not in text
    assert len(requests_to(emu, "run", 1)) == 1 and emu.runs_started() == 1
