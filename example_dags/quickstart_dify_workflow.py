"""Quick start, Dify workflow app: run a workflow through its Service API key, then use its output.

Two tasks:

* ``write_text`` (``DifyStreamWorkflowOperator``) checks the inputs against the app's parameters
  (``GET /parameters``), runs the workflow bound to the connection's app key and follows its event
  stream: every node that starts or finishes reaches the task log as it happens. It returns one
  XCom dict: ``outputs`` (the workflow's output variables), ``status``, ``total_tokens``, ``usage``
  (``tokens``, ``price``, ``currency``: what the run cost), ``workflow_run_id``, ...
* ``publish`` (a TaskFlow task) receives that dict and uses the output: here it logs the text and
  what it cost and returns the text; in your DAG it would post it or store it.

Connection ``dify_default`` (type ``dify``): host = the Service API base URL, which ends in ``/v1``
(Dify Cloud: ``https://api.dify.ai/v1``); password = the app's API key (``app-...``, one key per
app). Set it as the environment variable ``AIRFLOW_CONN_DIFY_DEFAULT`` or in the UI.

The inputs fit the bundled emulator's "Text Writer" app (a required text input ``topic``, a
select ``tone``, an output variable ``text``); change them to your workflow's start variables.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from docify_provider.operators.dify import DifyStreamWorkflowOperator

# A task's logger.info() lines land in its main log in the UI (print() output would land in the
# collapsed "Post Execute" group instead).
log = logging.getLogger(__name__)

with DAG(
    dag_id="quickstart_dify_workflow",
    schedule=None,  # run it by hand (or `airflow dags test`); give it a cron string to schedule it
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dify", "quickstart"],
    # Params are the run's settings: the UI's trigger form shows them, `airflow dags test -c '{...}'`
    # overrides them.
    params={
        "topic": Param("Airflow providers", type="string", description="What the workflow writes about"),
        "tone": Param("neutral", type="string", description="The app's select: neutral, formal or casual"),
    },
    doc_md=__doc__,
) as dag:
    write_text = DifyStreamWorkflowOperator(
        task_id="write_text",
        dify_conn_id="dify_default",
        # Start variable -> value, checked against the app before the run is sent (a missing required
        # input, an unknown name or a value outside a select's options fails here, unbilled).
        # "{{ ... }}" is filled in when the task runs.
        inputs={"topic": "{{ params.topic }}", "tone": "{{ params.tone }}"},
        # A retry never pays twice: it re-attaches to the run an earlier try started, or takes its
        # finished result, instead of starting another. (deferrable=True would hold the stream in
        # the triggerer instead of a worker slot: worth it for long workflows.)
        retries=2,
        retry_delay=timedelta(seconds=30),
    )

    @task
    def publish(run: dict[str, Any]) -> str:
        # outputs holds the workflow's output variables by name: "text" is the Text Writer's.
        text = str((run["outputs"] or {}).get("text") or "")
        log.info("Dify run %s %s: %s", run["workflow_run_id"], run["status"], text)
        # What the run cost: its tokens, and the price Dify put on them (a streamed run sums it from
        # the node events; a price Dify did not report is left out).
        usage, billed = run["usage"], f"{run['total_tokens']} tokens"
        if usage["price"] is not None:
            billed += f", {usage['price']} {usage['currency'] or ''}".rstrip()
        log.info("Billed: %s", billed)
        return text

    # Passing write_text.output makes publish run after write_text and receive its XCom.
    publish(write_text.output)
