"""No run left behind when a trigger fails: real ``dag.test()`` runs against the emulators on 127.0.0.1.

The set-up users met: the connection is kept only in Airflow's metadata database (as
``airflow-dify login`` writes it). Under ``dag.test()`` / ``airflow dags test`` on Airflow 3.1+,
the trigger runs inline and cannot read such a connection ("The conn_id ... isn't defined"),
while the task on the worker can (``db_only``; Airflow 3.0's ``dag.test()`` gives inline triggers
the metadata database, so that case is skipped there). ``worker_only`` gives the same split on
every line: the connection is an ``AIRFLOW_CONN_*`` variable that is taken out of the environment
while ``dag.test()`` runs the trigger (as on a triggerer host that lacks it). Nothing of the
provider is mocked.

* account API (run started on the worker, then deferred): the worker follows the run to its end;
* Service API and Docify (the trigger would send the run): nothing was sent, and the error says so.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest

from airflow_helpers import AIRFLOW_LINE, console_text, new_dag, run_dag, without_mask_requests
from docify_provider.operators.dify import DifyStreamWorkflowOperator
from docify_provider.operators.dify_openapi import DifyRunAppOperator
from docify_provider.operators.docify import DocifyStreamScenarioOperator
from docify_provider.testing.dify_openapi import ACCOUNT_TOKEN, TEXT_APP_ID
from docify_provider.testing.keys import SUMMARY_KEY

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.airflow_line("an inline trigger reads a connection kept only in the DB on 3.0, not on 3.1+"),
]

#: Where the connection is: only in the metadata database, or only in the worker's environment.
WHERE = [
    pytest.param(
        "db_only",
        marks=pytest.mark.skipif(
            AIRFLOW_LINE < (3, 1),
            reason="Airflow 3.0's dag.test() runs triggers with the metadata database: they read the connection",
        ),
    ),
    "worker_only",
]

TEXT_KEY = "app-EmuTextWorkflow0000000001"


def _connection(where: str, monkeypatch: Any, conn_type: str, host: str, password: str, from_trigger: int = 1) -> str:
    """A connection the task can read and the inline trigger cannot (see the module docstring); its id.

    ``worker_only``: hidden from the ``from_trigger``-th trigger ``dag.test()`` runs inline, and every later one.
    """
    conn_id = f"{conn_type}_{where}_{uuid.uuid4().hex[:8]}"
    extra = {"max_retries": 2, "idle_timeout": 5, "connect_timeout": 2, "read_timeout": 10}
    if where == "db_only":
        from airflow.models.connection import Connection
        from airflow.utils.session import create_session

        with create_session() as session:
            session.add(
                Connection(conn_id=conn_id, conn_type=conn_type, host=host, password=password, extra=json.dumps(extra))
            )
        return conn_id
    import airflow.sdk.definitions.dag as dag_module

    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    monkeypatch.setenv(name, json.dumps({"conn_type": conn_type, "host": host, "password": password, "extra": extra}))
    real = dag_module._run_inline_trigger
    runs = [0]

    def without_the_connection(*args: Any) -> Any:  # the triggerer's environment lacks it
        runs[0] += 1
        if runs[0] < from_trigger:
            return real(*args)
        value = os.environ.pop(name)
        try:
            return real(*args)
        finally:
            os.environ[name] = value

    monkeypatch.setattr(dag_module, "_run_inline_trigger", without_the_connection)
    return conn_id


def _flat(text: str) -> str:
    """``text`` with every run of whitespace as one space (Airflow 3.0 wraps error messages)."""
    return " ".join(text.split())


def _not_found(conn_id: str) -> str:
    return f"AirflowNotFoundException: The conn_id `{conn_id}` isn't defined"


@pytest.mark.parametrize("where", WHERE)
def test_account_run_is_followed_on_the_worker_when_the_trigger_cannot_read_the_connection(
    airflow_env: Any, dify_openapi_emulator: Any, capfd: Any, monkeypatch: Any, where: str
) -> None:
    emu = dify_openapi_emulator
    conn_id = _connection(where, monkeypatch, "dify_openapi", emu.base_url, ACCOUNT_TOKEN)
    with new_dag("trigger_fail_openapi") as dag:
        DifyRunAppOperator(
            task_id="run", app="Text Writer", inputs={"topic": "Airflow"}, deferrable=True, dify_openapi_conn_id=conn_id
        )
    outcome = run_dag(dag)
    text = _flat(console_text(capfd))
    assert outcome.state("run") == "success", text[-4000:]
    xcom = outcome.xcom("run")
    assert xcom["status"] == "succeeded" and xcom["outputs"]["text"] and xcom["app_id"] == TEXT_APP_ID
    run_id = xcom["workflow_run_id"]
    assert emu.runs_started(ACCOUNT_TOKEN) == 1, "one run bought"
    assert f"Deferring: the triggerer follows Dify run {run_id}" in text
    assert (
        f"The Dify trigger failed ({_not_found(conn_id)}) after Dify run {run_id} was started; "
        "following the run to its end on this worker" in text
    ), text[-4000:]
    assert emu.events_requests(ACCOUNT_TOKEN, app=TEXT_APP_ID) >= 1, "the worker re-attached through the events route"
    assert "may have reached" not in text
    assert ACCOUNT_TOKEN not in without_mask_requests(text) and ACCOUNT_TOKEN not in repr(xcom)


def test_a_service_api_run_an_earlier_try_started_is_followed_on_the_worker_when_the_trigger_cannot_read_the_connection(
    dify_conns: Any, capfd: Any, monkeypatch: Any
) -> None:
    """Try 1's trigger loses the stream after ``workflow_started`` and cannot re-attach (the run detail
    answers 500), so the try fails with the run going on; try 2 defers to re-attach by the run id,
    and that trigger cannot read the connection: the worker follows the run (events endpoint)."""
    from docify_provider.testing.faults import Fault

    emu = dify_conns
    conn_id = _connection("worker_only", monkeypatch, "dify", emu.base_url, TEXT_KEY, from_trigger=2)
    emu.inject(Fault("stream", "drop_mid_stream", after_events=2))
    emu.inject(Fault("run_detail", "status", status=500))
    with new_dag("trigger_fail_dify_reattach") as dag:
        DifyStreamWorkflowOperator(
            task_id="run",
            dify_conn_id=conn_id,
            inputs={"topic": "Airflow and Dify", "tone": "formal"},
            validate=False,
            deferrable=True,
            retries=1,
        )
    outcome = run_dag(dag)
    text = _flat(console_text(capfd))
    assert outcome.state("run") == "success", text[-5000:]
    assert outcome.try_number("run") == 2
    assert emu.runs_started() == 1, "one run bought"
    xcom = outcome.xcom("run")
    run_id = xcom["workflow_run_id"]
    assert xcom["status"] == "succeeded" and xcom["outputs"]
    assert f"started Dify run {run_id}; re-attaching to it instead of starting a new run" in text
    assert (
        f"The Dify trigger failed ({_not_found(conn_id)}) after Dify run {run_id} was started; "
        "following the run to its end on this worker" in text
    ), text[-5000:]
    assert TEXT_KEY not in without_mask_requests(text)


#: (label, emulator fixture, connection type, key, the stream operator and its kwargs) of the two
#: backends whose trigger sends the run itself.
SENDS_IN_TRIGGER = {
    "Dify": (
        "dify_conns",
        "dify",
        TEXT_KEY,
        DifyStreamWorkflowOperator,
        {"inputs": {"topic": "Airflow and Dify", "tone": "formal"}},
    ),
    "Docify": (
        "docify_conns",
        "docify",
        SUMMARY_KEY,
        DocifyStreamScenarioOperator,
        {"inputs": {"text": "Airflow runs Docify. Then more text follows.", "language": "en"}},
    ),
}


@pytest.mark.parametrize("label", list(SENDS_IN_TRIGGER))
@pytest.mark.parametrize("where", WHERE)
def test_a_stream_whose_trigger_cannot_read_the_connection_sent_nothing_and_says_so(
    request: Any, capfd: Any, monkeypatch: Any, where: str, label: str
) -> None:
    """Service API and Docify: the trigger would send the run; it fails first, and says nothing was sent."""
    fixture, conn_type, key, operator, kwargs = SENDS_IN_TRIGGER[label]
    emu = request.getfixturevalue(fixture)
    conn_id = _connection(where, monkeypatch, conn_type, emu.base_url, key)
    with new_dag(f"trigger_fail_{conn_type}") as dag:
        operator(task_id="run", **{f"{conn_type}_conn_id": conn_id}, **kwargs, validate=False, deferrable=True)
    outcome = run_dag(dag)
    text = _flat(console_text(capfd))
    assert outcome.state("run") == "failed"
    assert emu.runs_started() == 0
    assert f"{label}ConfigError" in text, text[-4000:]
    assert (
        f"The {label} trigger failed before it sent anything ({_not_found(conn_id)}): nothing was sent to {label}"
        in text
    )
    assert f"Define it as AIRFLOW_CONN_{conn_id.upper()} there" in text and "Troubleshooting" in text
    assert "may have reached" not in text
    assert key not in without_mask_requests(text)


@pytest.mark.parametrize("label", list(SENDS_IN_TRIGGER))
def test_a_restart_marker_the_trigger_cannot_read_sends_nothing_and_the_worker_decides(
    request: Any, capfd: Any, monkeypatch: Any, label: str
) -> None:
    """The restart marker fails closed like the ledger: unreadable in the triggerer is "unknown", not
    "nothing sent" (it used to read as nothing sent, and the trigger sent the run). The trigger sends
    nothing and fires ``trigger_failed`` with ``sent`` unknown; the worker reads the marker itself,
    finds "deferred" (no trigger sent the run) and fails saying nothing was sent."""
    import docify_provider.triggers.base as trigger_base

    fixture, conn_type, key, operator, kwargs = SENDS_IN_TRIGGER[label]
    emu = request.getfixturevalue(fixture)
    conn_id = _connection("worker_only", monkeypatch, conn_type, emu.base_url, key, from_trigger=99)
    real = trigger_base._xcom_class()

    class Unreadable:
        set = real.set

        @staticmethod
        def get_one(**_: Any) -> Any:
            raise OSError("the metadata database is gone")

    monkeypatch.setattr(trigger_base, "_xcom_class", lambda: Unreadable)
    with new_dag(f"marker_unreadable_{conn_type}") as dag:
        operator(task_id="run", **{f"{conn_type}_conn_id": conn_id}, **kwargs, validate=False, deferrable=True)
    outcome = run_dag(dag)
    text = _flat(console_text(capfd))
    assert outcome.state("run") == "failed", text[-4000:]
    assert emu.runs_started() == 0, "nothing was sent"
    assert "cannot read its restart marker (OSError: the metadata database is gone)" in text, text[-4000:]
    assert f"run outcome unknown: the {label} stream trigger cannot read its restart marker" in text
    assert f"nothing was sent to {label} (its restart marker still says 'deferred')" in text
    assert key not in without_mask_requests(text)
