"""The code the docs site shows, run against the emulators.

``docs/`` includes the text between ``# --8<-- [start:NAME]`` and ``# --8<-- [end:NAME]`` below
(``pymdownx.snippets``; a missing file or section fails ``mkdocs build --strict``), so what a reader
copies is what runs here. The example DAGs (``example_dags/``) are included the same way and run in
``tests/airflow/test_example_dags.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_helpers import console_text, run_dag

pytestmark = pytest.mark.timeout(120)


def test_docify_hook_walkthrough(docify_conns: Any, invoice_png: Path, tmp_path: Path) -> None:
    invoice, out_dir = invoice_png, tmp_path / "out"
    out_dir.mkdir()
    seen: list[tuple[str, str | None]] = []
    print = lambda *args: seen.append(args)  # noqa: E731 - what the snippet prints, kept for the asserts

    # --8<-- [start:docify-hook]
    from docify_provider.hooks.docify import DocifyHook

    hook = DocifyHook(docify_conn_id="docify_invoice")
    info = hook.get_scenario_info()  # free: the scenario's name and parameters
    print(info.scenario_name, [p.variable for p in info.parameters])
    upload = hook.upload_file(invoice)  # streamed; also bytes, file objects, ObjectStoragePath, s3://...
    result = hook.run_scenario({"invoice_image": upload})  # a blocking run -> RunResult
    for event in hook.stream_scenario({"invoice_image": invoice}):  # a path is uploaded for a FILE input
        print(event.type, event.content)
    stored = hook.download_file(result.files[0], out_dir)  # streamed; the name made safe, the size checked
    hook.close()
    # --8<-- [end:docify-hook]

    assert result.is_success and Path(stored).is_file()
    assert seen[0][1] == ["invoice_image"]
    assert [s[0] for s in seen[1:]][-1] == "COMPLETE"
    assert docify_conns.runs_started() == 2


def test_dify_hook_walkthrough(dify_conns: Any) -> None:
    seen: list[Any] = []
    print = lambda *args: seen.append(args)  # noqa: E731

    # --8<-- [start:dify-hook]
    from docify_provider.hooks.dify import DifyHook

    hook = DifyHook(dify_conn_id="dify_text")
    print(hook.get_app_info().name)  # GET /info: free
    params = hook.get_parameters()  # GET /parameters: the app's input variables and upload limits
    print([(v.variable, v.type, v.required) for v in params.user_input_form])
    run = hook.run_workflow({"topic": "Airflow providers"}, user="airflow:etl")  # blocking -> WorkflowRun
    print(run.status, run.outputs)
    for event in hook.stream_workflow({"topic": "Airflow providers", "tone": "formal"}, user="airflow:etl"):
        print(event.event, event.workflow_run_id)
    print(hook.get_workflow_run(run.workflow_run_id).status)  # read a run by id: free
    hook.close()
    # --8<-- [end:dify-hook]

    assert seen[0] == ("Text Writer",)
    assert seen[1] == ([("topic", "text-input", True), ("tone", "select", False)],)
    assert seen[2][0] == "succeeded" and seen[-1] == ("succeeded",)
    assert ("workflow_finished", seen[-2][1]) == seen[-2]
    assert dify_conns.runs_started() == 2


def test_dify_account_hook_walkthrough(openapi_conn: Any) -> None:
    seen: list[Any] = []
    print = lambda *args: seen.append(args)  # noqa: E731

    # --8<-- [start:dify-account-hook]
    from docify_provider.hooks.dify_openapi import DifyOpenAPIHook

    hook = DifyOpenAPIHook(dify_openapi_conn_id="dify_openapi_default")
    print(hook.get_account().email)  # who the token belongs to
    for app in hook.select_apps(["Text Writer", "Chat Assistant"]):  # exact names or ids, each must match one app
        print(app.id, app.name, app.mode)
    schema = hook.describe_app("Text Writer").input_schema  # JSON Schema of the app's inputs
    print(sorted(schema["properties"]["inputs"]["properties"]))
    for event in hook.run_app("Text Writer", {"topic": "tomorrow's delivery plan"}):  # checked, then streamed
        print(event.event)
    hook.close()
    # --8<-- [end:dify-account-hook]

    assert "@" in seen[0][0]
    assert [s[2] for s in seen[1:3]] == ["workflow", "chat"]
    assert "topic" in seen[3][0]
    assert seen[-1] == ("workflow_finished",)
    assert openapi_conn.runs_started() == 1


def test_docify_sensor_then_run(docify_conns: Any) -> None:
    # --8<-- [start:docify-sensor]
    from airflow.sdk import DAG, task

    from docify_provider.operators.docify import DocifyRunScenarioOperator
    from docify_provider.sensors.docify import DocifyScenarioSensor

    with DAG("docs_summary_when_ready", schedule=None) as dag:
        ready = DocifyScenarioSensor(
            task_id="ready",
            docify_conn_id="docify_summary",
            expected_parameters=["text", "language"],  # succeed once the scenario offers these inputs
            mode="reschedule",  # or deferrable=True; no worker slot between pokes either way
            poke_interval=60,
            timeout=3600,
        )
        summarize = DocifyRunScenarioOperator(
            task_id="summarize",
            docify_conn_id="docify_summary",
            inputs={"text": "Airflow schedules the batch. Docify reads it.", "language": "en"},
        )

        @task
        def publish(run: dict) -> str:
            return run["json_result"]["summary"]

        ready >> summarize
        publish(summarize.output)
    # --8<-- [end:docify-sensor]

    outcome = run_dag(dag)

    assert outcome.dag_state == "success", outcome.states()
    assert outcome.xcom("ready")["scenario_code"] == "TEXT_SUMMARY"
    assert outcome.xcom("publish") == "Airflow schedules the batch."


def test_dify_sensor_waits_for_a_run_started_elsewhere(dify_conns: Any, capfd: Any) -> None:
    from docify_provider.hooks.dify import DifyHook

    hook = DifyHook(dify_conn_id="dify_text")
    started = hook.run_workflow({"topic": "started elsewhere"}, user="someone-else").workflow_run_id
    hook.close()

    # --8<-- [start:dify-sensor]
    from airflow.sdk import DAG, Param, task

    from docify_provider.sensors.dify import DifyWorkflowRunSensor

    with DAG("docs_wait_for_dify_run", schedule=None, params={"workflow_run_id": Param("", type="string")}) as dag:
        wait = DifyWorkflowRunSensor(
            task_id="wait_for_run",
            dify_conn_id="dify_text",
            workflow_run_id="{{ params.workflow_run_id }}",  # a run started elsewhere: Dify's UI, an API call
            deferrable=True,  # waits in the triggerer: no worker slot
            poke_interval=30,
            timeout=3600,
        )

        @task
        def report(run: dict) -> str:
            return f"{run['workflow_run_id']} {run['status']}: {run['outputs']['text'][:40]}"

        report(wait.output)
    # --8<-- [end:dify-sensor]

    outcome = run_dag(dag, {"workflow_run_id": started})

    assert outcome.dag_state == "success", console_text(capfd)[-3000:]
    assert outcome.xcom("report").startswith(f"{started} succeeded: ")


def test_dify_account_run_one_app(openapi_conn: Any, capfd: Any) -> None:
    # --8<-- [start:dify-app-operator]
    from airflow.sdk import DAG, task

    from docify_provider.operators.dify_openapi import DifyRunAppOperator

    with DAG("docs_dify_apps", schedule=None) as dag:
        write = DifyRunAppOperator(
            task_id="write",
            dify_openapi_conn_id="dify_openapi_default",
            app="Text Writer",  # an exact app name or an app id
            inputs={"topic": "what changed in the warehouse today"},
            deferrable=True,  # the triggerer follows the run by id once Dify names it
        )
        ask = DifyRunAppOperator(
            task_id="ask",
            dify_openapi_conn_id="dify_openapi_default",
            app="Chat Assistant",
            query="Summarise today's open support tickets.",  # a chat app's message
        )

        @task
        def publish(text_run: dict, chat_run: dict) -> str:
            return f"{text_run['outputs']['text'][:40]} / {chat_run['answer'][:40]}"

        publish(write.output, ask.output)
    # --8<-- [end:dify-app-operator]

    outcome = run_dag(dag)

    assert outcome.dag_state == "success", console_text(capfd)[-3000:]
    assert outcome.xcom("write")["mode"] == "workflow"
    chat = outcome.xcom("ask")
    assert chat["mode"] == "chat" and chat["answer"] and chat["conversation_id"]
    assert openapi_conn.runs_started() == 2
