"""DAG for ``tests/deployment/test_deferred_timeout.py``: a deferred Dify stream outlives its execution_timeout.

The long app runs ``RUN_SECONDS``; the task allows ``TIMEOUT_SECONDS``. Airflow 3 bounds a
deferral only by the trigger's own timeout, which the operator sets from what is left of
``execution_timeout``; when the scheduler fails the task for it, the operator must stop the Dify
task (the triggerer has dropped the trigger, so nothing else would).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from docify_provider.operators.dify import DifyStreamWorkflowOperator

DAG_ID = "dify_deferred_timeout"
RUN_SECONDS = 150
TIMEOUT_SECONDS = 30

with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["dify", "test"]):
    DifyStreamWorkflowOperator(
        task_id="too_long",
        dify_conn_id="dify_long",
        inputs={"seconds": RUN_SECONDS, "steps": 30},
        deferrable=True,
        execution_timeout=timedelta(seconds=TIMEOUT_SECONDS),
    )
