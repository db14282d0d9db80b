"""DAG for ``tests/deployment/test_deferred_timeout.py``: a deferred Dify batch outlives its execution_timeout.

Two quick items, two that run ``RUN_SECONDS``, two that never get a slot (two at a time); the task
allows ``TIMEOUT_SECONDS``. When the scheduler fails the deferral for it, the triggerer cancels the
batch trigger (stopping nothing) and the task, resumed, must stop the two runs left going, report
every item and fail (``operators.batch_timeout``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from docify_provider.operators.dify import DifyBatchWorkflowOperator

DAG_ID = "dify_batch_deferred_timeout"
RUN_SECONDS = 150
TIMEOUT_SECONDS = 30

with DAG(dag_id=DAG_ID, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["dify", "test"]):
    DifyBatchWorkflowOperator(
        task_id="too_long",
        dify_conn_id="dify_batch_long",
        inputs=[{"seconds": s, "steps": 30, "label": f"doc-{i}"} for i, s in enumerate([1, 1] + [RUN_SECONDS] * 4)],
        max_concurrency=2,
        execution_timeout=timedelta(seconds=TIMEOUT_SECONDS),
    )
