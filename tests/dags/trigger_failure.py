"""DAG for ``tests/deployment/test_trigger_failure_deployment.py``: two deferred Dify tasks whose trigger cannot load.

``account`` starts its run on the worker (account API) and defers to follow it; ``service`` and
``docify`` defer before anything is sent (Service API, Docify: the trigger would send the run). The test's triggerer cannot
import the provider's triggers, so Airflow resumes both with ``__fail__``: the first must follow
its run to the end on the worker, the second must say that nothing was sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from docify_provider.operators.dify import DifyStreamWorkflowOperator
from docify_provider.operators.dify_openapi import DifyRunAppOperator
from docify_provider.operators.docify import DocifyStreamScenarioOperator

DAG_ID = "trigger_failure"

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 0, "retry_delay": timedelta(seconds=0)},
    tags=["dify", "test"],
):
    DifyRunAppOperator(task_id="account", app="Long Job", inputs={"seconds": 4, "steps": 4}, deferrable=True)
    DifyStreamWorkflowOperator(
        task_id="service",
        dify_conn_id="dify_text",
        inputs={"topic": "Airflow and Dify", "tone": "formal"},
        validate=False,
        deferrable=True,
    )
    DocifyStreamScenarioOperator(
        task_id="docify",
        docify_conn_id="docify_summary",
        inputs={"text": "Airflow runs Docify. Then more text follows.", "language": "en"},
        validate=False,
        deferrable=True,
    )
