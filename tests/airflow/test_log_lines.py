"""Task-log lines say what is known, as a person reads it (issue 19, item 5).

No "None" where the service reported nothing ("price None", "None steps", "in None s"): the
clause is left out. Durations are rounded ("79.9 s"). The first, normal deferral is not called
"Re-attaching", and a run that was not streamed is not called "(streaming, deferred)". The lines
are read where a user reads them: the narration of real answers, the console of ``dag.test()``
runs against the emulators, and a trigger's own log.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from airflow_helpers import console_text, new_dag, run_dag
from docify_provider.dify.models import WorkflowEvent, WorkflowRun
from docify_provider.dify.narration import log_workflow_event, run_summary
from docify_provider.docify.models import RunResult
from docify_provider.docify.narration import result_summary

pytestmark = pytest.mark.timeout(120)

TEXT = {"topic": "Airflow and Dify", "tone": "formal"}


def _provider_lines(text: str) -> list[str]:
    """The lines the provider's narration writes (``Dify ...`` / ``Docify ...`` after the log prefix)."""
    return [line for line in text.splitlines() if re.search(r"\b(Dify|Docify) (run|node|stream|workflow)\b", line)]


# -- the narration, on answers with values missing ------------------------------------------------


def test_a_run_without_steps_or_price_leaves_those_clauses_out() -> None:
    run = WorkflowRun.from_detail({"id": "r1", "status": "succeeded", "elapsed_time": 79.904321, "total_tokens": 1234})
    assert run_summary(run) == "run r1 succeeded in 79.9 s: 1,234 tokens; 0 output files"
    bare = WorkflowRun.from_detail({"id": "r2", "status": "failed"})
    assert run_summary(bare) == "run r2 failed; 0 output files"


def test_a_run_with_everything_reads_in_full() -> None:
    run = WorkflowRun.from_detail(
        {"id": "r1", "status": "succeeded", "elapsed_time": 4.5, "total_tokens": 1, "total_steps": 3}
    )
    run.usage.update(total_price="0.0000360", currency="USD")
    assert run_summary(run) == "run r1 succeeded in 4.50 s: 1 token, 3 steps, price 0.000036 USD; 0 output files"


def test_a_node_without_tokens_or_price_says_only_what_it_has(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test_log_lines")
    caplog.set_level(logging.INFO, logger="test_log_lines")
    bare = {"event": "node_finished", "workflow_run_id": "r", "data": {"title": "Start", "status": "succeeded"}}
    log_workflow_event(log, WorkflowEvent.from_api(bare))
    priced = {
        "event": "node_finished",
        "workflow_run_id": "r",
        "data": {
            "title": "LLM",
            "status": "succeeded",
            "elapsed_time": 1.23456,
            "execution_metadata": {"total_tokens": 120, "total_price": "0.0012", "currency": "USD"},
        },
    }
    log_workflow_event(log, WorkflowEvent.from_api(priced))
    assert caplog.messages == [
        "Dify node Start succeeded",
        "Dify node LLM succeeded in 1.23 s, 120 tokens, price 0.0012 USD",
    ]


def test_a_docify_result_without_cost_or_time() -> None:
    full = RunResult.from_api({"runId": "d1", "isSuccess": True, "elapsedTime": 79904, "costPoints": 2.0})
    assert result_summary(full) == "run d1 succeeded in 79.9 s, cost 2 points"
    bare = RunResult.from_api({"runId": "d2", "isSuccess": False})
    assert result_summary(bare) == "run d2 failed"


# -- the task log of real runs (dag.test() against the emulators) ----------------------------------


def test_a_blocking_dify_run_logs_no_none(dify_conns: Any, capfd: pytest.CaptureFixture[str]) -> None:
    from docify_provider.operators.dify import DifyRunWorkflowOperator

    with new_dag("log_lines_dify_blocking") as dag:
        DifyRunWorkflowOperator(task_id="run", dify_conn_id="dify_text", inputs=TEXT, validate=False)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "success", text[-4000:]
    run_id = outcome.xcom("run")["workflow_run_id"]
    # A blocking answer reports no price: the clause is left out, and the time is rounded.
    line = re.search(rf"Dify run {run_id} succeeded in \d+\.\d\d s: [\d,]+ tokens, \d+ steps?; 0 output files", text)
    assert line, "\n".join(_provider_lines(text))
    assert "Sending Dify run (blocking)" in text
    lines = _provider_lines(text)
    assert lines and not [x for x in lines if "None" in x], lines


def test_a_docify_run_logs_no_none(docify_conns: Any, capfd: pytest.CaptureFixture[str]) -> None:
    from docify_provider.operators.docify import DocifyRunScenarioOperator
    from helpers import SUMMARY_INPUTS

    with new_dag("log_lines_docify") as dag:
        DocifyRunScenarioOperator(task_id="run", docify_conn_id="docify_summary", inputs=SUMMARY_INPUTS)
    outcome = run_dag(dag)
    text = console_text(capfd)
    assert outcome.dag_state == "success", text[-4000:]
    run_id = outcome.xcom("run")["run_id"]
    assert re.search(rf"Docify run {run_id} succeeded in [\d.]+ s, cost 2 points; \d+ attachments?", text), text[-3000:]
    lines = _provider_lines(text)
    assert lines and not [x for x in lines if "None" in x], lines


# -- deferral: "follows" the first time, "re-attaching" only when it really re-attaches -------------


@pytest.mark.airflow_line("deferral under the line's trigger runner: the first deferral's words")
def test_the_first_deferral_is_not_called_reattaching(
    openapi_conn: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from docify_provider.operators.dify_openapi import DifyRunAppOperator

    caplog.set_level(logging.INFO)
    with new_dag("log_lines_first_deferral") as dag:
        DifyRunAppOperator(task_id="run", app="Text Writer", inputs={"topic": "Airflow"}, deferrable=True)
    outcome = run_dag(dag)
    text = console_text(capfd) + "\n" + "\n".join(caplog.messages)
    assert outcome.dag_state == "success", text[-4000:]
    xcom = outcome.xcom("run")
    run_id, task_id = xcom["workflow_run_id"], xcom["task_id"]
    assert f"Deferring: the triggerer follows Dify run {run_id} (task {task_id}) of app {xcom['app_id']}" in text
    assert f"The triggerer follows Dify run {run_id} for user " in text, text[-3000:]
    # The log lines, not Airflow 3.0's debug echo of the restart marker (whose "meaning" explains that a
    # restarted trigger re-attaches).
    said = "\n".join(line for line in text.splitlines() if "meaning" not in line)
    assert "Re-attaching" not in said and "re-attaches" not in said and "(streaming, deferred)" not in said
    assert "task None" not in said and "user None" not in said


@pytest.mark.airflow_line("a connection read inside the triggerer's event loop")
async def test_the_trigger_says_sending_following_or_reattaching(
    dify_conns: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from docify_provider.operators.dify_run import RESUMED
    from docify_provider.triggers.dify import DifyWorkflowTrigger

    async def first(trigger: Any) -> Any:
        async for event in trigger.run():
            return event
        raise AssertionError("no event")

    sent = await first(DifyWorkflowTrigger(inputs={"topic": "tea"}, dify_conn_id="dify_text", user="u1"))
    run_id = sent.payload["workflow_run_id"]
    said = console_text(capfd)
    assert "Sending Dify run from the triggerer (streaming) for user u1" in said, said
    resumed = DifyWorkflowTrigger(
        inputs=None, dify_conn_id="dify_text", user="u1", workflow_run_id=run_id, reattach=RESUMED
    )
    assert (await first(resumed)).payload["status"] == "success"
    said = console_text(capfd)
    assert f"Re-attaching to Dify run {run_id} (resumed after human input) for user u1" in said, said
    # Kwargs of an earlier build name the run but no reason: a run id there is always an earlier try's.
    older = DifyWorkflowTrigger(inputs=None, dify_conn_id="dify_text", user="u1", workflow_run_id=run_id)
    assert (await first(older)).payload["status"] == "success"
    said += console_text(capfd)
    assert f"Re-attaching to Dify run {run_id} (an earlier try started it) for user u1" in said, said
    assert "(streaming, deferred)" not in said and "None" not in said
    assert dify_conns.runs_started() == 1
