"""DAG for ``tests/deployment/test_deferred_timeout.py``: a deferred account-API run outlives
its execution_timeout.

The long app runs ``RUN_SECONDS``; the task allows ``TIMEOUT_SECONDS``. The deferral's timeout is what
is left of ``execution_timeout``; when the scheduler fails the task for it, ``DifyRunAppOperator`` must
stop the Dify task through the account API (the triggerer has dropped the trigger).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from docify_provider.operators.dify_openapi import DifyRunAppOperator

DAG_ID = "dify_openapi_deferred_timeout"
RUN_SECONDS = 150
TIMEOUT_SECONDS = 30

with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["dify", "test"]):
    DifyRunAppOperator(
        task_id="too_long",
        app="Long Job",
        dify_openapi_conn_id="dify_account",
        inputs={"seconds": RUN_SECONDS, "steps": 30},
        deferrable=True,
        execution_timeout=timedelta(seconds=TIMEOUT_SECONDS),
    )
