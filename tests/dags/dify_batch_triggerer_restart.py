"""DAG for ``tests/deployment/test_batch_triggerer_restart.py``: a deferred Dify batch that outlives its triggerer.

The test copies this file into a throw-away dags folder, points ``dify_long`` at an emulator, and
SIGKILLs the triggerer while the batch's runs are in flight. Each item asks the long app for a
4-second run in 2 steps, ten at a time: the kill lands mid-batch with items running, bought and
never sent.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from docify_provider.operators.dify import DifyBatchWorkflowOperator

DAG_ID = "dify_batch_triggerer_restart"
ITEMS = 30
RUN_SECONDS = 4

with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["dify", "test"]):
    DifyBatchWorkflowOperator(
        task_id="batch",
        dify_conn_id="dify_long",
        inputs=[{"seconds": RUN_SECONDS, "steps": 2} for _ in range(ITEMS)],
        max_concurrency=10,
        progress_every=1.0,
        deferrable=True,
    )
