"""A text workflow feeding a TaskFlow task: one Dify run, its output in plain Python.

``draft`` runs a Dify workflow with text inputs (``topic``, and ``tone`` from the app's select
options) in blocking mode; Dify Cloud's gateway drops blocking answers after 100 s, and if that
happens the provider finds the run again in the app's logs and waits for it instead of sending
it twice. ``publish`` receives the XCom dict (``outputs``, ``usage``, ``workflow_run_id``, …).

Params: ``topic``, ``tone``; connection ``dify_text`` (the app key of a workflow with a text-input
``topic`` and a select ``tone``, and an output variable ``text``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from docify_provider.operators.dify import DifyRunWorkflowOperator

log = logging.getLogger(__name__)

with DAG(
    dag_id="example_dify_text",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dify", "example"],
    params={"topic": Param("Airflow providers", type="string"), "tone": Param("neutral", type="string")},
    doc_md=__doc__,
) as dag:
    draft = DifyRunWorkflowOperator(
        task_id="draft",
        dify_conn_id="dify_text",
        inputs={"topic": "{{ params.topic }}", "tone": "{{ params.tone }}"},
        retries=1,
    )

    @task
    def publish(run: dict[str, Any]) -> str:
        text = (run["outputs"] or {}).get("text", "")
        usage = run.get("usage") or {}
        line = f"{run['workflow_run_id']}: {len(text)} characters, {run['total_tokens'] or 0} tokens"
        if usage.get("price") is not None:  # left out when the service reported no price
            line += f", {usage['price']} {usage.get('currency') or ''}".rstrip()
        log.info("Published draft %s", line)
        return text

    publish(draft.output)
