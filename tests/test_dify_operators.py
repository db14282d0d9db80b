"""The Dify operators in real Airflow runs (``dag.test()``) against the Dify emulator over 127.0.0.1.

Nothing of ours is mocked; ``emu.runs_started`` counts the runs the emulator started (= billed).
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_helpers import console_text, new_dag, run_dag
from docify_provider.operators.dify import (
    DifyRunWorkflowOperator,
    DifyStreamWorkflowOperator,
    DifyUploadFileOperator,
)
from docify_provider.testing.dify import TEXT_APP_KEY
from docify_provider.testing.faults import Fault
from docify_provider.xcom import DIFY_XCOM_KEYS

pytestmark = pytest.mark.timeout(120)

TEXT = {"topic": "Airflow and Dify", "tone": "formal"}
PER_RUN = {"workflow_run_id", "task_id", "created_at", "finished_at", "elapsed_time"}


def _same(xcom: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in xcom.items() if k not in PER_RUN}


def test_blocking_streaming_and_deferred_give_the_same_xcom(dify_conns, capfd):
    emu = dify_conns
    with new_dag("dify_same_xcom") as dag:
        DifyRunWorkflowOperator(task_id="blocking", dify_conn_id="dify_text", inputs=TEXT, validate=False)
        DifyStreamWorkflowOperator(task_id="streaming", dify_conn_id="dify_text", inputs=TEXT, validate=False)
        DifyStreamWorkflowOperator(
            task_id="deferred", dify_conn_id="dify_text", inputs=TEXT, validate=False, deferrable=True
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "success", text[-4000:]
    xcoms = {t: outcome.xcom(t) for t in ("blocking", "streaming", "deferred")}
    for xcom in xcoms.values():
        assert set(xcom) == set(DIFY_XCOM_KEYS)
        assert xcom["status"] == "succeeded" and xcom["workflow_run_id"] and xcom["task_id"]
    assert _same(xcoms["streaming"]) == _same(xcoms["deferred"])
    assert _same(xcoms["blocking"])["outputs"] == _same(xcoms["streaming"])["outputs"]
    assert emu.runs_started(key=TEXT_APP_KEY) == 3
    assert "Dify node" in text and "Dify workflow started" in text
    assert TEXT_APP_KEY not in text and TEXT_APP_KEY not in repr(xcoms)


def test_blocking_524_is_recovered_with_one_run(dify_conns, capfd):
    emu = dify_conns
    emu.inject(Fault("run", "timeout_after_start", status=524))
    with new_dag("dify_524") as dag:
        DifyRunWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT, validate=False)
    outcome = run_dag(dag)
    assert outcome.dag_state == "success", console_text(capfd)[-4000:]
    assert outcome.xcom("run")["status"] == "succeeded"
    assert emu.runs_started(key=TEXT_APP_KEY) == 1


def test_stream_closed_silently_is_reattached(dify_conns, capfd):
    emu = dify_conns
    emu.inject(Fault("stream", "end_without_complete", after_events=2))
    with new_dag("dify_reattach") as dag:
        DifyStreamWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT, validate=False)
    outcome = run_dag(dag)
    assert outcome.dag_state == "success", console_text(capfd)[-4000:]
    assert outcome.xcom("run")["status"] == "succeeded"
    assert emu.runs_started(key=TEXT_APP_KEY) == 1


def test_failed_run_fails_the_task(dify_conns, capfd):
    emu = dify_conns
    emu.inject(Fault("run", "failed_run", message="model exploded"))
    with new_dag("dify_failed") as dag:
        DifyRunWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT, validate=False)
    outcome = run_dag(dag)
    assert outcome.dag_state == "failed"
    assert "model exploded" in console_text(capfd)


def test_pause_fail_names_the_form(dify_conns, capfd):
    with new_dag("dify_pause_fail") as dag:
        DifyStreamWorkflowOperator(
            task_id="run", dify_conn_id="dify_human", inputs={"topic": "x"}, validate=False, on_pause="fail"
        )
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "failed"
    assert "DifyPausedError" in text and "paused for human input" in text


def test_upload_operator(dify_conns, tmp_path):
    source = tmp_path / "note.txt"
    source.write_text("hello dify")
    with new_dag("dify_upload") as dag:
        DifyUploadFileOperator(task_id="up", dify_conn_id="dify_document", source=str(source))
    outcome = run_dag(dag)
    assert outcome.dag_state == "success"
    xcom = outcome.xcom("up")
    assert xcom["id"] and xcom["name"] == "note.txt"
