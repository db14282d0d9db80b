"""``DifyRunAppOperator`` in real Airflow runs (``dag.test()``) against the Dify OpenAPI emulator."""

from __future__ import annotations

import json

import pytest

from airflow_helpers import console_text, new_dag, run_dag, without_mask_requests
from docify_provider.operators.dify_openapi import DifyRunAppOperator
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, CHAT_APP_ID, TEXT_APP_ID
from docify_provider.xcom import DIFY_XCOM_KEYS

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def openapi_conn(airflow_env, dify_openapi_emulator, monkeypatch):
    conn = {
        "conn_type": "dify_openapi",
        "host": dify_openapi_emulator.base_url,
        "password": ACCOUNT_TOKEN,
        "extra": {"max_retries": 2, "idle_timeout": 5, "connect_timeout": 2, "read_timeout": 10},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_OPENAPI_DEFAULT", json.dumps(conn))
    return dify_openapi_emulator


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
    assert emu.runs_started(ACCOUNT_TOKEN, app=CHAT_APP_ID) == 1


def test_bad_input_fails_before_any_run(openapi_conn, capfd):
    emu = openapi_conn
    with new_dag("openapi_bad") as dag:
        DifyRunAppOperator(task_id="run", app="Text Writer", inputs={"tone": "formal"}, retries=0)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("run") == "failed"
    assert "topic" in text
    assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 0


def test_deferrable_is_refused_until_the_account_trigger_exists() -> None:
    """Silently running on the worker when deferral was asked for would surprise a user: say so at once."""
    import pytest

    from docify_provider.operators.dify_openapi import DifyRunAppOperator

    with pytest.raises(ValueError, match="deferrable=True is not supported yet"):
        DifyRunAppOperator(task_id="t", app="Text Writer", deferrable=True)


@pytest.mark.parametrize("status", [400, 429, 503])
def test_a_refused_run_request_leaves_nothing_pending_so_the_retry_runs(openapi_conn, capfd, status):
    """A 400/429/503 answer to the run request itself means no run started: the retry sends it (once)."""
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
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.state("run") == "success", text[-4000:]
    assert outcome.try_number("run") == 2
    assert "outcome unknown" not in text
    assert emu.runs_started(ACCOUNT_TOKEN, app=TEXT_APP_ID) == 1


def test_a_gateway_answer_to_the_run_request_keeps_the_retry_from_paying_again(openapi_conn, capfd):
    """A 502 may hide a started run (no run lookup on this API): the retry fails closed instead."""
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
    assert outcome.state("run") == "failed" and outcome.try_number("run") == 2
    assert "outcome unknown" in text and "it is not re-sent" in text
    assert "DifyOpenAPIOutcomeUnknownError" in text, "the account API's family, so except DifyOpenAPIError catches it"
    assert emu.runs_started(ACCOUNT_TOKEN) == 0
