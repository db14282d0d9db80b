"""Quick start, Dify account API: run an app of your workspace by name, then use its output.

One login (``airflow-dify login``) gives Airflow an account token that runs every app of a
workspace by name or id, whatever its mode: no API key per app.

* ``run_app`` (``DifyRunAppOperator``) finds the app named by the param ``app``, checks the inputs
  against its input schema, runs it and follows its event stream (node progress reaches the task
  log). It returns one XCom dict: ``outputs`` (a workflow's output variables), ``answer`` (a chat or
  completion app's reply), ``mode``, ``app_id``, ``status``, ``total_tokens``, ``usage``
  (``tokens``, ``price``, ``currency``: what the run cost), ``workflow_run_id``, ...
* ``publish`` (a TaskFlow task) receives that dict and uses the output: here it logs the text and
  what it cost and returns the text.

Connection ``dify_openapi_default`` (type ``dify-openapi``), the one ``airflow-dify login`` writes:
host = the account API base URL, which ends in ``/openapi/v1`` (Dify Cloud:
``https://api.dify.ai/openapi/v1``); password = the account token (``dfoa_...``). Or set it as the
environment variable ``AIRFLOW_CONN_DIFY_OPENAPI_DEFAULT`` (``airflow-dify login --print-env``
prints that line).

The inputs fit the bundled emulator's "Text Writer" workflow app (a required text input ``topic``,
a select ``tone``, an output variable ``text``); change them to your app's inputs. For a chat app
pass its message as ``query=...`` as well.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from docify_provider.operators.dify_openapi import DifyRunAppOperator

# A task's logger.info() lines land in its main log in the UI (print() output would land in the
# collapsed "Post Execute" group instead).
log = logging.getLogger(__name__)

with DAG(
    dag_id="quickstart_dify_account",
    schedule=None,  # run it by hand (or `airflow dags test`); give it a cron string to schedule it
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dify", "quickstart"],
    # Params are the run's settings: the UI's trigger form shows them, `airflow dags test -c '{...}'`
    # overrides them.
    params={
        "app": Param("Text Writer", type="string", description="The exact name (or the id) of the app to run"),
        "topic": Param("Airflow providers", type="string", description="What the app writes about"),
    },
    doc_md=__doc__,
) as dag:
    run_app = DifyRunAppOperator(
        task_id="run_app",
        dify_openapi_conn_id="dify_openapi_default",
        # An exact name must match one app of the workspace; a name that matches none (or several)
        # fails the task before anything runs.
        app="{{ params.app }}",
        # Input variable -> value, checked against the app's input schema before the run is sent.
        # "{{ ... }}" is filled in when the task runs.
        inputs={"topic": "{{ params.topic }}"},
        # A retry never pays twice: it re-attaches to the run an earlier try started (workflow
        # apps), or refuses to send again when that run cannot be followed (chat apps).
        retries=2,
        retry_delay=timedelta(seconds=30),
    )

    @task
    def publish(run: dict[str, Any]) -> str:
        # A workflow app answers in outputs (by output variable; "text" is the Text Writer's), a chat
        # or completion app in answer.
        text = str(run.get("answer") or (run["outputs"] or {}).get("text") or "")
        log.info("Dify %s app %s %s: %s", run["mode"], run["app_id"], run["status"], text)
        # What the run cost: its tokens, and the price Dify put on them (left out when not reported).
        usage, billed = run["usage"], f"{run['total_tokens']} tokens"
        if usage["price"] is not None:
            billed += f", {usage['price']} {usage['currency'] or ''}".rstrip()
        log.info("Billed: %s", billed)
        return text

    # Passing run_app.output makes publish run after run_app and receive its XCom.
    publish(run_app.output)
