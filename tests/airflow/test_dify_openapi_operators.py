"""``DifyRunAppOperator`` in real Airflow runs (``dag.test()``) against the Dify OpenAPI emulator."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from airflow_helpers import (
    console_text,
    new_dag,
    run_dag,
    without_mask_requests,
)
from docify_provider.operators.dify_openapi import DifyRunAppOperator
from docify_provider.testing.dify_openapi import (
    ACCOUNT_TOKEN,
    ADVANCED_CHAT_APP_ID,
    CHAT_APP_ID,
    DOCUMENT_APP_ID,
    HUMAN_INPUT_APP_ID,
    LONG_APP_ID,
    TEXT_APP_ID,
)
from docify_provider.testing.faults import Fault
from docify_provider.triggers.dify_openapi import DifyAppRunTrigger
from docify_provider.xcom import DIFY_MARKER_XCOM_KEY, DIFY_XCOM_KEYS

pytestmark = pytest.mark.timeout(120)


def test_workflow_app_by_name_gives_the_workflow_xcom_plus_app(openapi_conn, capfd):
    emu = openapi_conn
    with new_dag("openapi_workflow") as dag:
        DifyRunAppOperator(task_id="run", app="Text Writer", inputs={"topic": "Airflow", "tone": "formal"})
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "success", text[-4000:]
    xcom = outcome.xcom("run")
    assert set(DIFY_XCOM_KEYS) <= set(xcom)
    assert xcom["app_id"] == TEXT_APP_ID and xcom["mode"] == "workflow"
    assert xcom["app_name"] == "Text Writer", "the name the lookup gave, next to the id it resolved to"
    assert xcom["status"] == "succeeded" and xcom["workflow_run_id"]
    assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 1
    assert "Dify node" in text
    assert ACCOUNT_TOKEN not in without_mask_requests(text) and ACCOUNT_TOKEN not in repr(xcom)


def test_chat_app_gives_answer_and_conversation(openapi_conn, capfd):
    emu = openapi_conn
    with new_dag("openapi_chat") as dag:
        DifyRunAppOperator(task_id="chat", app=CHAT_APP_ID, inputs={"name": "Ada"}, query="Hello?")
    outcome = run_dag(dag)
    assert outcome.dag_state == "success", console_text(capfd)[-4000:]
    xcom = outcome.xcom("chat")
    assert xcom["mode"] == "chat" and xcom["answer"] and xcom["conversation_id"]
    assert xcom["app_name"] == "Chat Assistant", "given by id: the name is the describe read's"
    assert emu.runs_started(ACCOUNT_TOKEN, app=CHAT_APP_ID) == 1
    # The name costs no request of its own: one describe read for the inputs, no app listing.
    assert not [r for r in emu.requests if r.endpoint == "apps"], [r.endpoint for r in emu.requests]


def test_bad_input_fails_before_any_run(openapi_conn, capfd):
    emu = openapi_conn
    with new_dag("openapi_bad") as dag:
        DifyRunAppOperator(task_id="run", app="Text Writer", inputs={"tone": "formal"}, retries=0)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("run") == "failed"
    assert "topic" in text
    assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 0


def test_a_local_file_input_is_sent_with_the_run_and_the_app_described_once(openapi_conn, capfd, tmp_path):
    """The file goes as a part of the run request (not its path as text, which Dify refuses with 400
    "must be a file"); the inputs are checked once, before the ledger: one describe read per task."""
    emu = openapi_conn
    document = tmp_path / "notes.txt"
    document.write_text("quarterly notes")
    with new_dag("openapi_file_input") as dag:
        DifyRunAppOperator(task_id="run", app=DOCUMENT_APP_ID, inputs={"document": str(document)}, retries=0)
    outcome = run_dag(dag)
    assert outcome.dag_state == "success", console_text(capfd)[-4000:]
    assert outcome.xcom("run")["status"] == "succeeded" and outcome.xcom("run")["files"]
    assert emu.runs_started(ACCOUNT_TOKEN, app=DOCUMENT_APP_ID) == 1
    assert emu.upload_count(key=ACCOUNT_TOKEN) == 1
    describes = [r for r in emu.requests if r.method == "GET" and r.path.endswith(f"/apps/{DOCUMENT_APP_ID}")]
    assert len(describes) == 1, [r.path for r in emu.requests]


# -- deferral (DifyAppRunTrigger) --------------------------------------------------------------------

APP_TRIGGER_CLASSPATH = "docify_provider.triggers.dify_openapi.DifyAppRunTrigger"


def _stored_kwargs(dag_id: str) -> list[dict[str, Any]]:
    """The kwargs of every DifyAppRunTrigger row of ``dag_id`` (as the triggerer would rebuild it)."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = [
            (row.encrypted_kwargs, dict(row.kwargs))
            for row in session.scalars(select(Trigger).where(Trigger.classpath == APP_TRIGGER_CLASSPATH))
            if row.kwargs.get("dag_id") == dag_id
        ]
    for encrypted, kwargs in rows:
        assert ACCOUNT_TOKEN not in encrypted and ACCOUNT_TOKEN not in json.dumps(kwargs)
    return [kwargs for _, kwargs in rows]


@pytest.mark.airflow_line("deferral and the marker XCom under the line's trigger runner")
def test_deferred_workflow_app_defers_once_named_and_gives_the_same_xcom(openapi_conn, capfd):
    emu = openapi_conn
    with new_dag("openapi_deferred") as dag:
        DifyRunAppOperator(task_id="run", app="Text Writer", inputs={"topic": "Airflow"}, deferrable=True)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "success", text[-4000:]
    xcom = outcome.xcom("run")
    assert set(DIFY_XCOM_KEYS) <= set(xcom)
    assert xcom["app_id"] == TEXT_APP_ID and xcom["mode"] == "workflow" and xcom["status"] == "succeeded"
    assert xcom["app_name"] == "Text Writer", "carried through the trigger, not looked up again on resume"
    assert xcom["outputs"]["text"]
    assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 1
    assert emu.events_requests(ACCOUNT_TOKEN, app=TEXT_APP_ID) >= 1, "the trigger followed the run by id"
    assert f"Deferring: the triggerer follows Dify run {xcom['workflow_run_id']}" in text
    (kwargs,) = _stored_kwargs(dag.dag_id)
    assert kwargs["workflow_run_id"] == xcom["workflow_run_id"] and kwargs["app_id"] == TEXT_APP_ID
    assert kwargs["app_name"] == "Text Writer"
    assert kwargs["dify_openapi_conn_id"] == "dify_openapi_default" and "inputs" not in kwargs
    marker = outcome.xcom("run", key=DIFY_MARKER_XCOM_KEY)
    assert marker["workflow_run_id"] == xcom["workflow_run_id"] and marker["task_id"] == xcom["task_id"]
    assert ACCOUNT_TOKEN not in without_mask_requests(text) and ACCOUNT_TOKEN not in repr(xcom)


def test_default_deferrable_is_honoured(openapi_conn, monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    from airflow.providers.common.compat.sdk import conf

    assert conf.getboolean("operators", "default_deferrable")
    import importlib

    import docify_provider.operators.dify_openapi as module

    # The default is read when the class is defined, as for Airflow's own operators.
    reloaded = importlib.reload(module)
    try:
        assert reloaded.DifyRunAppOperator(task_id="t", app="Text Writer").deferrable is True
    finally:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
        importlib.reload(module)
    assert DifyRunAppOperator(task_id="t", app="Text Writer", deferrable=False).deferrable is False


def test_deferred_run_reattaches_after_a_cut_events_stream(openapi_conn, capfd, caplog):
    emu = openapi_conn
    emu.inject(Fault("events", "drop_mid_stream", after_events=3, times=1))
    with new_dag("openapi_deferred_cut") as dag:
        DifyRunAppOperator(task_id="run", app=LONG_APP_ID, inputs={"seconds": 1, "steps": 4}, deferrable=True)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "success", text[-4000:]
    assert outcome.xcom("run")["status"] == "succeeded"
    assert emu.runs_started(ACCOUNT_TOKEN, app=LONG_APP_ID) == 1
    assert emu.events_requests(ACCOUNT_TOKEN, app=LONG_APP_ID) >= 2, "the cut stream was re-attached"
    assert "Re-attached Dify stream of run" in caplog.text and "broke" in caplog.text


def test_deferred_advanced_chat_gives_answer_and_conversation(openapi_conn, capfd):
    emu = openapi_conn
    with new_dag("openapi_deferred_chat") as dag:
        DifyRunAppOperator(
            task_id="chat", app=ADVANCED_CHAT_APP_ID, inputs={"name": "Ada"}, query="Hi?", deferrable=True
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "success", text[-4000:]
    xcom = outcome.xcom("chat")
    assert xcom["mode"] == "advanced-chat"
    assert xcom["answer"] == "You asked: Hi?. Voilà — a réponse."
    (run,) = [r for r in emu.runs if r.app.app_id == ADVANCED_CHAT_APP_ID]
    assert xcom["conversation_id"] == run.conversation_id
    assert "Deferring: the triggerer follows" in text
    assert emu.runs_started(ACCOUNT_TOKEN, app=ADVANCED_CHAT_APP_ID) == 1


def test_deferrable_basic_chat_streams_on_the_worker_and_says_so(openapi_conn, capfd):
    emu = openapi_conn
    with new_dag("openapi_deferred_basic_chat") as dag:
        DifyRunAppOperator(task_id="chat", app=CHAT_APP_ID, inputs={"name": "Ada"}, query="Hello?", deferrable=True)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "success", text[-4000:]
    xcom = outcome.xcom("chat")
    assert xcom["answer"] == "You asked: Hello?. Voilà — a réponse." and xcom["conversation_id"]
    assert "a Dify chat app cannot be re-attached" in text and "streams on this worker" in text
    assert not _stored_kwargs(dag.dag_id)
    assert emu.runs_started(ACCOUNT_TOKEN, app=CHAT_APP_ID) == 1


def test_deferral_is_bounded_by_what_is_left_of_execution_timeout(openapi_conn, monkeypatch):
    """The deferral's timeout (which the scheduler enforces and ``dag.test()`` does not) is what is left
    of execution_timeout; that its lapse stops the run is checked on a real deployment
    (``tests/deployment/test_deferred_timeout.py``)."""
    from datetime import datetime, timezone

    import airflow.sdk.definitions.dag as dag_module
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    seen: list[Any] = []
    real = dag_module._run_inline_trigger

    def watching(trigger: Any, *rest: Any) -> Any:  # Airflow 3.1+ passes the task instance too
        with create_session() as session:
            row = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, task_id="run").one()
            seen.append((row.state, row.trigger_timeout, datetime.now(timezone.utc)))
        return real(trigger, *rest)

    monkeypatch.setattr(dag_module, "_run_inline_trigger", watching)
    emu = openapi_conn
    with new_dag("openapi_deferred_bound") as dag:
        DifyRunAppOperator(
            task_id="run",
            app="Text Writer",
            inputs={"topic": "bounded"},
            deferrable=True,
            execution_timeout=timedelta(minutes=10),
        )
    outcome = run_dag(dag)
    assert outcome.dag_state == "success"
    ((_, timeout, now),) = seen
    assert timeout is not None
    left = (timeout - now).total_seconds()
    assert 540 < left <= 600, left
    assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 1


def test_run_log_link_points_at_the_app_log_in_the_console(openapi_conn, monkeypatch):
    from docify_provider.operators.dify_openapi import DifyRunLogLink

    op = DifyRunAppOperator(task_id="run", app="Text Writer")
    # by name: test_default_deferrable_is_honoured reloads the module (a new class object)
    assert any(type(link).__name__ == "DifyRunLogLink" for link in op.operator_extra_links)
    base = openapi_conn.base_url.removesuffix("/openapi/v1")
    xcom = {"app_id": TEXT_APP_ID, "workflow_run_id": "run-1"}
    assert DifyRunLogLink.url_for("dify_openapi_default", xcom) == f"{base}/app/{TEXT_APP_ID}/logs"
    conn = {
        "conn_type": "dify_openapi",
        "host": "https://dify.example.com/openapi/v1",
        "password": ACCOUNT_TOKEN,
        "extra": {"console_url": "https://console.example.com/"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_CONSOLE", json.dumps(conn))
    assert DifyRunLogLink.url_for("dify_console", xcom) == f"https://console.example.com/app/{TEXT_APP_ID}/logs"
    assert DifyRunLogLink.url_for("dify_console", None) == ""


def test_run_log_link_is_stored_for_the_ui_when_deferred_and_at_the_end(openapi_conn):
    """Airflow 3 keeps a link in XCom (computed on the worker); the UI reads it from there."""
    with new_dag("openapi_link") as dag:
        DifyRunAppOperator(task_id="run", app="Text Writer", inputs={"topic": "links"}, deferrable=True)
    outcome = run_dag(dag)
    assert outcome.dag_state == "success"
    expected = f"{openapi_conn.base_url.removesuffix('/openapi/v1')}/app/{TEXT_APP_ID}/logs"
    assert outcome.xcom("run", key="_link_DifyRunLogLink") == expected


# -- a real deployment: the scheduler enforces the deferral's timeout -----------------------------------


@pytest.mark.parametrize("status", [400, 429, 503])
def test_a_refused_run_request_leaves_nothing_pending_so_the_retry_runs(openapi_conn, capfd, status):
    """A 400/429/503 answer to the run request itself means no run started: the retry sends it (once).
    A 400 is not retried at all (a retry cannot fix the request): the task fails at once, nothing run."""
    from datetime import timedelta

    from docify_provider.testing.faults import Fault

    emu = openapi_conn
    emu.inject(Fault("stream", "status", status=status))
    with new_dag(f"openapi_refused_{status}") as dag:
        DifyRunAppOperator(
            task_id="run",
            app=TEXT_APP_ID,
            inputs={"topic": "Airflow"},
            retries=1,
            retry_delay=timedelta(seconds=0),
            # A 429 is otherwise waited on within the try (tests/contract/test_not_started_wait.py).
            max_wait_not_started=0,
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert "outcome unknown" not in text
    if status == 400:
        assert outcome.state("run") == "failed" and outcome.try_number("run") == 1, text[-4000:]
        assert "Not retried (DifyOpenAPIBadRequestError)" in text
        assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 0
        return
    assert outcome.state("run") == "success", text[-4000:]
    assert outcome.try_number("run") == 2
    assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 1


@pytest.mark.airflow_line("the pending record in the line's store (a Variable before 3.3)")
def test_a_gateway_answer_to_the_run_request_keeps_the_retry_from_paying_again(openapi_conn, capfd):
    """A 502 may hide a started run (no run lookup on this API): the task fails closed at once, its
    retry unspent (it would have failed closed on the pending record), naming where that record is."""
    from datetime import timedelta

    from docify_provider.testing.faults import Fault

    emu = openapi_conn
    emu.inject(Fault("stream", "status", status=502))
    with new_dag("openapi_gateway") as dag:
        DifyRunAppOperator(
            task_id="run", app=TEXT_APP_ID, inputs={"topic": "Airflow"}, retries=1, retry_delay=timedelta(seconds=0)
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("run") == "failed" and outcome.try_number("run") == 1, text[-4000:]
    assert "Not retried (DifyOpenAPIRunGatewayError): a Dify run request may already have been started" in text
    assert "; without its run id it cannot be followed; trying again" in text
    assert "clear the task state: " in text and "key 'dify_state'" in text, "where the pending record is"
    assert "DifyOpenAPIRunGatewayError" in text, "the account API's family, so except DifyOpenAPIError catches it"
    assert emu.runs_started(ACCOUNT_TOKEN) == 0


def _chat_cut_and_retried(emu: Any, capfd: Any, dag_id: str, app: str, **kwargs: Any) -> tuple[Any, str]:
    """A chat-family run (on the worker) whose first stream is cut after two events, retried at once."""
    emu.inject(Fault("stream", "drop_mid_stream", after_events=2, times=1))
    with new_dag(dag_id) as dag:
        DifyRunAppOperator(
            task_id="chat",
            app=app,
            inputs={"name": "Ada"},
            deferrable=False,
            retries=1,
            retry_delay=timedelta(seconds=0),
            **kwargs,
        )
    return run_dag(dag), console_text(capfd)


@pytest.mark.airflow_line("the run ids in the line's store (a Variable before 3.3)")
def test_a_retry_of_an_advanced_chat_run_reattaches_by_its_workflow_run_id(openapi_conn, capfd):
    """Non-deferred advanced-chat: try 1's stream is cut and re-attaching fails, so the try fails
    with the run still going; try 2 must follow that run through the events route, which knows it
    by its workflow run id (not the message id the chat events also carry), and buy nothing."""
    emu = openapi_conn
    emu.inject(Fault("events", "status", status=503, times=3))
    outcome, text = _chat_cut_and_retried(emu, capfd, "openapi_adv_chat_retry", ADVANCED_CHAT_APP_ID, query="Hi?")
    assert outcome.dag_state == "success", text[-6000:]
    assert outcome.try_number("chat") == 2, text[-6000:]
    (run,) = [r for r in emu.runs if r.app.app_id == ADVANCED_CHAT_APP_ID]
    xcom = outcome.xcom("chat")
    assert xcom["workflow_run_id"] == run.id
    assert xcom["answer"] == "You asked: Hi?. Voilà — a réponse."
    assert emu.runs_started(ACCOUNT_TOKEN, app=ADVANCED_CHAT_APP_ID) == 1


def _paused_account_run(emu: Any) -> tuple[str, str]:
    """A paused human-input run started with the account token: (run id, task id)."""
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

    hook = DifyOpenAPIHook()
    paused = list(hook.client.run_app(HUMAN_INPUT_APP_ID, {"topic": "x"}))[-1]
    assert paused.event == "workflow_paused" and paused.task_id
    return str(paused.workflow_run_id), str(paused.task_id)


def test_stop_of_a_paused_account_run_is_bounded_and_says_what_it_saw(openapi_conn, capfd) -> None:
    """A current Dify answers success to the stop of a paused run and leaves it paused (C6): the
    operator (the Service API operator's ``_stop_running``) never waits for ``stopped`` and logs
    the status it saw."""
    emu = openapi_conn
    run_id, task_id = _paused_account_run(emu)
    operator = DifyRunAppOperator(task_id="t", app=HUMAN_INPUT_APP_ID, inputs={"topic": "x"})
    operator._running = (task_id, run_id, None)
    started = time.monotonic()
    operator._stop_running("execution_timeout")
    assert time.monotonic() - started < 5, "the stop reads the status once, never waits for 'stopped'"
    assert emu.stop_requests(ACCOUNT_TOKEN, app=HUMAN_INPUT_APP_ID) == 1 and emu.run(run_id).status == "paused"
    text = console_text(capfd)
    assert f"execution_timeout: stopping Dify task {task_id}" in text
    assert f"run {run_id} is still paused (status seen: paused)" in text


def test_account_trigger_on_kill_of_a_paused_run_is_bounded_and_says_what_it_saw(
    openapi_conn, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import logging

    emu = openapi_conn
    run_id, task_id = _paused_account_run(emu)
    trigger = DifyAppRunTrigger(app_id=HUMAN_INPUT_APP_ID, workflow_run_id=run_id, dify_task_id=task_id)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="docify_provider"):
        asyncio.run(trigger.on_kill())
    assert time.monotonic() - started < 5, "on_kill reads the status once, never waits for 'stopped'"
    assert emu.stop_requests(ACCOUNT_TOKEN, app=HUMAN_INPUT_APP_ID) == 1 and emu.run(run_id).status == "paused"
    assert f"run {run_id} is still paused" in caplog.text, caplog.text


@pytest.mark.parametrize("allow_resubmit", [False, True])
def test_a_retry_of_a_chat_run_that_cannot_be_reattached_follows_allow_resubmit(openapi_conn, capfd, allow_resubmit):
    """A basic chat run is recorded by its message id, and the events route cannot re-attach to it.
    Try 1 fails closed at once naming the task state, or, with ``allow_resubmit=True``, try 2 sends a
    new run (the policy's row for a run that cannot be followed). It used to fail closed either way,
    its message advising the ``allow_resubmit=True`` it then ignored."""
    emu = openapi_conn
    outcome, text = _chat_cut_and_retried(
        emu, capfd, f"openapi_chat_retry_{allow_resubmit}", CHAT_APP_ID, query="Hello?", allow_resubmit=allow_resubmit
    )
    assert outcome.try_number("chat") == (2 if allow_resubmit else 1), text[-6000:]
    if allow_resubmit:
        assert outcome.state("chat") == "success", text[-6000:]
        assert emu.runs_started(ACCOUNT_TOKEN, app=CHAT_APP_ID) == 2
        assert "allow_resubmit=True, so a new run is sent (the earlier one may also have been billed)" in text
        assert outcome.xcom("chat")["answer"]
    else:
        assert outcome.state("chat") == "failed"
        assert emu.runs_started(ACCOUNT_TOKEN, app=CHAT_APP_ID) == 1
        assert "Not retried (DifyOpenAPIOutcomeUnknownError): " in text and "paying twice" in text, text[-3000:]
        assert "; Dify's events route cannot re-attach to a chat run; trying again" in text
        assert "clear the task state: " in text and "key 'dify_state'" in text, "where the pending record is"


def test_account_api_failures_after_a_deferral_are_the_account_api_family(openapi_conn, monkeypatch):
    """The account API's trigger and ``execute_complete`` rebuild failures in its own error family, so
    ``except DifyOpenAPIError`` catches them (they came back as the Service API's ``DifyError``s: the
    trigger and ``execute_complete`` named ``DifyError`` as the root for every Dify operator)."""
    import asyncio

    from docify_provider.dify_openapi.errors import DifyOpenAPIOutcomeUnknownError, DifyOpenAPIStreamIncompleteError
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

    hook = DifyOpenAPIHook()
    events = hook.client.run_app(TEXT_APP_ID, {"topic": "families"})
    started = next(e for e in events if e.workflow_run_id)
    events.close()  # type: ignore[attr-defined]
    hook.close()

    async def nothing(*_: Any) -> Any:  # an events stream that ends before the run does
        return
        yield

    monkeypatch.setattr(DifyAppRunTrigger, "_open", lambda self, client, progress: nothing())
    trigger = DifyAppRunTrigger(app_id=TEXT_APP_ID, workflow_run_id=str(started.workflow_run_id))
    (event,) = asyncio.run(_events_of(trigger))
    assert event.payload["error_type"] == "DifyOpenAPIStreamIncompleteError", event.payload

    with new_dag("openapi_families"):
        op = DifyRunAppOperator(task_id="run", app=TEXT_APP_ID, inputs={"topic": "families"})
    with pytest.raises(DifyOpenAPIStreamIncompleteError):
        op.execute_complete({}, dict(event.payload))
    with pytest.raises(DifyOpenAPIOutcomeUnknownError):
        op.execute_complete({}, None)


async def _events_of(trigger: Any) -> list[Any]:
    return [event async for event in trigger.run()]


def test_the_account_operator_is_a_sibling_of_the_service_api_operators_not_a_subclass():
    """``DifyRunAppOperator`` shares ``DifyRunOperatorBase`` with the Service API's operators; it no
    longer inherits (and templates) the Service API's ``dify_conn_id``, which it never used."""
    from docify_provider.operators.dify import DifyStreamWorkflowOperator
    from docify_provider.operators.dify_run import DifyRunOperatorBase

    assert issubclass(DifyRunAppOperator, DifyRunOperatorBase)
    assert not issubclass(DifyRunAppOperator, DifyStreamWorkflowOperator)
    assert "dify_conn_id" not in DifyRunAppOperator.template_fields
    assert "dify_openapi_conn_id" in DifyRunAppOperator.template_fields
    assert "execute" not in DifyRunAppOperator.__dict__, "the flow is the base's"
    with new_dag("openapi_no_service_conn"), pytest.raises(Exception, match="dify_conn_id"):
        DifyRunAppOperator(task_id="run", app=TEXT_APP_ID, dify_conn_id="dify_default")
